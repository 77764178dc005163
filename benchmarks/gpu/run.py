"""The GPU checks of issue 33 in one run, one JSON line at the end (``benchmarks/gpu/run.sh``).

On a machine with CUDA, within ``DEADLINE_S``: the tests marked ``gpu``; aebench's training
loop against a bare loop of the same model; the IWAE evaluation against the GPU's float32 matmul
roofline (TF32 off, as evaluation runs unless asked; its error against float64, and TF32's against
float32); ``[train] compile`` eager against compiled (default and "reduce-overhead"); and the
one-layer Burda VAE k = 1 protocol (benchmarks/burda2015-1layer.toml) with CUDA graphs, timed for
as many epochs as fit, projected to its 3,280. Without CUDA it runs the CPU-side checks (the
suites validate, the gpu tests are collected and skip) and says what it skipped. A section that
fails records its error and the run goes on: the line is always printed.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aebench import Data, DataInfo, Split, load_plugins
from aebench.estimators.likelihood import iwae_bound, seeded
from aebench.run.sections import TrainSection
from aebench.run.suite import load_suite
from aebench.run.train import make_objective, train_model

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "perf"))
import bench_compile  # noqa: E402  (benchmarks/perf is no package)

DEADLINE_S = 450.0  # run.sh's 8 minutes, less a margin for start-up and the tests' imports
START = time.perf_counter()
PLUGINS = load_plugins()
INFO = DataInfo(shape=(1, 28, 28), kind="binary", n_classes=10)
BURDA_VAE = {
    "latent_dim": 50,
    "hidden": [200, 200],
    "activation": "tanh",
    "output_bias": "data-mean",
    "init": "glorot",
}
PROTOCOL_EPOCHS = 3280
STAGE_ENDS = [1, 4, 13, 40, 121, 364, 1093]  # the multistep milestones: lr falls 10^(-1/7)


def left_s() -> float:
    return DEADLINE_S - (time.perf_counter() - START)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def section(name: str, out: dict[str, Any], work: Callable[[], Any]) -> None:
    """``out[name]`` = what ``work`` returns, or its error: one failing check stops nothing."""
    try:
        out[name] = work()
    except Exception as exc:  # noqa: BLE001 - reported in the line, the run goes on
        out[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        traceback.print_exc(file=sys.stderr)


# -- CPU side ------------------------------------------------------------------------------


def gpu_tests() -> dict[str, Any]:
    """tests/gpu, marked ``gpu``: their counts (on a CPU machine all skip)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-o", "addopts="]
    done = subprocess.run(
        [*command, "-m", "gpu", "tests/gpu"], cwd=ROOT, capture_output=True, text=True
    )
    counts = {
        k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", done.stdout)
    }
    failures = re.findall(r"^FAILED (\S+)", done.stdout, re.M)
    return {"rc": done.returncode, **counts, "failed_tests": failures}


def suites() -> dict[str, Any]:
    """The Burda suites validate against the installed plugins; how many trials, compiled?"""
    found = {}
    for name in ("burda2015.toml", "burda2015-1layer.toml"):
        loaded = load_suite(ROOT / "benchmarks" / name, PLUGINS)
        settings = TrainSection(**loaded.trials[0].train)
        found[name] = {"trials": len(loaded.trials), "compiles": settings.compiles(59_600)}
    return found


# -- the workloads ---------------------------------------------------------------------------


def grey_images(n: int, device: torch.device) -> Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)


def burda_vae(device: torch.device, train_x: Tensor) -> nn.Module:
    entry = PLUGINS.models.get("vae")
    torch.manual_seed(0)
    model = entry.factory(INFO, **entry.params.model_validate(BURDA_VAE).model_dump())
    model = model.to(device)
    model.fit_before_training(train_x)
    return model


def none_regularizer() -> Any:
    entry = PLUGINS.regularizers.get("none")
    return entry.factory(**entry.params.model_validate({}).model_dump())


def mnist_or_grey(device: torch.device) -> tuple[Tensor, str]:
    """MNIST's 59,600 training images (../shared/data) where they are here, else grey ones."""
    try:
        entry = PLUGINS.datasets.get("mnist")
        params = {"root": str(ROOT.parent / "shared" / "data"), "download": False}
        params |= {"binarize": "dynamic", "val_fraction": 400 / 60_000}
        data = entry.factory(**entry.params.model_validate(params).model_dump())
        return data.train.x.float().to(device), "mnist"
    except Exception:  # noqa: BLE001 - no files here: the same shapes, random grey levels
        return grey_images(59_600, device), "grey (no MNIST files)"


# -- GPU sections ----------------------------------------------------------------------------


def bare_epoch_s(model: nn.Module, x: Tensor, batch: int) -> float:
    """One epoch of the VAE written out: encoder, reparameterisation, Bernoulli decoder, KL."""
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, (0.99, 0.999), 1e-4, fused=True)
    sync()
    start = time.perf_counter()
    for index in torch.randperm(len(x), device=x.device).split(batch):
        xb = torch.bernoulli(x.index_select(0, index)).flatten(1)
        mu, logvar = model.encoder(xb).chunk(2, -1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = model.decoder(z).flatten(1)
        nll = F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        loss = (nll + kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync()
    return time.perf_counter() - start


def training_vs_bare() -> dict[str, Any]:
    """aebench's training loop against the bare loop, Burda's VAE, batches of 20."""
    device, n = torch.device("cuda"), 20_000
    x = grey_images(n, device)
    data = Data(
        info=INFO,
        train=Split(x),
        test=Split(x[:100]),
        batch_transform=lambda b, g: torch.bernoulli(b, generator=g),
    )
    settings = TrainSection(epochs=3, batch_size=20, betas=[0.99, 0.999], eps=1e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    result = train_model(
        burda_vae(device, x), none_regularizer(), data, settings, generator=generator
    )
    bare = burda_vae(device, x)
    bare_epoch_s(bare, x, 20)  # warm-up, as aebench's first epoch is not timed
    bare_s = min(bare_epoch_s(bare, x, 20) for _ in range(2))
    bare_rate = n / bare_s
    return {
        "samples": n,
        "aebench_samples_per_s": round(result.samples_per_s),
        "bare_samples_per_s": round(bare_rate),
        "aebench_over_bare": round(result.samples_per_s / bare_rate, 3),
    }


def matmul_tflops(n: int = 8192) -> float:
    a = torch.rand(n, n, device="cuda")
    b = torch.rand(n, n, device="cuda")
    a @ b
    best = math.inf
    for _ in range(5):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def decoder_flops(model: nn.Module) -> int:
    return sum(
        2 * m.in_features * m.out_features
        for m in model.decoder.modules()
        if isinstance(m, nn.Linear)
    )


def iwae_vs_roofline(n: int = 1000, k: int = 5000) -> dict[str, Any]:
    """log p(x) with K = 5000 over ``n`` binary inputs, 784-512-16 VAE, TF32 off (evaluation's
    default here), against the fp32 matmul roofline measured just before."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        entry = PLUGINS.models.get("vae")
        torch.manual_seed(0)
        params = {"hidden": [512], "latent_dim": 16}
        model = entry.factory(INFO, **entry.params.model_validate(params).model_dump())
        model = model.cuda().eval()
        x = grey_images(n, torch.device("cuda")).round()

        def estimate(m: nn.Module, xs: Tensor, seed: int = 0) -> Tensor:
            with torch.no_grad(), seeded(torch.Generator(device="cuda").manual_seed(seed)):
                return iwae_bound(m, xs, k)

        estimate(model, x[:8])
        tflops = matmul_tflops()
        sync()
        start = time.perf_counter()
        values = estimate(model, x)
        sync()
        seconds = time.perf_counter() - start
        roofline_s = decoder_flops(model) * n * k / (tflops * 1e12)
        checked = x[:50]
        fp32 = estimate(model, checked).double()
        torch.backends.cuda.matmul.allow_tf32 = True
        with_tf32 = estimate(model, checked).double()  # the same draws: TF32's own error
        torch.backends.cuda.matmul.allow_tf32 = False
        double = model.double()
        fp64 = estimate(double, checked.double())  # its own draws: the error includes K's noise
        fp64_other = estimate(double, checked.double(), seed=1)
        return {
            "n": n,
            "k": k,
            "finite": bool(torch.isfinite(values).all()),
            "matmul_tflops_fp32": round(tflops, 1),
            "fraction_of_roofline": round(roofline_s / seconds, 3),
            "s": round(seconds, 3),
            "max_abs_error_vs_fp64_nats": float((fp32 - fp64).abs().max()),
            "fp64_seed_to_seed_nats": float((fp64 - fp64_other).abs().max()),
            "max_abs_tf32_vs_fp32_nats": float((with_tf32 - fp32).abs().max()),
        }
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def compile_modes() -> dict[str, Any]:
    steps = 200
    found = {"default": bench_compile.run("cuda", steps=steps, rounds=3)}
    if left_s() > 200:
        found["reduce-overhead"] = bench_compile.run(
            "cuda", steps=steps, rounds=3, mode="reduce-overhead"
        )
    return found


def protocol_epoch(
    step: Callable[[Tensor], Tensor], x: Tensor, optimizer: torch.optim.Optimizer
) -> tuple[float, float]:
    """One epoch of batches of 20, dynamically binarised: (seconds, mean loss)."""
    sync()
    start = time.perf_counter()
    total = torch.zeros((), device=x.device)
    batches = 0
    for index in torch.randperm(len(x), device=x.device).split(20):
        xb = torch.bernoulli(x.index_select(0, index))
        loss = step(xb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        batches += 1
    sync()
    return time.perf_counter() - start, float(total) / batches


def burda_protocol_graphs() -> dict[str, Any]:
    """The one-layer VAE k = 1 protocol, its objective through CUDA graphs
    (``torch.compile(mode="reduce-overhead")``), for as many epochs as the deadline leaves."""
    device = torch.device("cuda")
    x, source = mnist_or_grey(device)
    model = burda_vae(device, x)
    objective = make_objective(model, none_regularizer(), device, "fp32")
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, (0.99, 0.999), 1e-4, fused=True)
    torch.backends.cuda.matmul.allow_tf32 = True  # as training runs on CUDA
    eager_s, _ = protocol_epoch(lambda xb: objective(xb, xb)[0], x, optimizer)
    graphed = torch.compile(objective, mode="reduce-overhead")
    start = time.perf_counter()
    first_s, _ = protocol_epoch(lambda xb: graphed(xb, xb)[0], x, optimizer)  # compiles
    epochs, losses, seconds = 1, [], []
    while left_s() > 3 * max(first_s, 5.0) and epochs < PROTOCOL_EPOCHS:
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * 10 ** (-sum(epochs >= end for end in STAGE_ENDS) / 7)
        s, loss = protocol_epoch(lambda xb: graphed(xb, xb)[0], x, optimizer)
        epochs += 1
        seconds.append(s)
        losses.append(round(loss, 2))
    per_epoch = sorted(seconds)[len(seconds) // 2] if seconds else first_s
    return {
        "data": source,
        "images": len(x),
        "eager_epoch_s": round(eager_s, 2),
        "first_graphed_epoch_s": round(first_s, 2),
        "graphed_epochs": epochs,
        "graphed_epoch_s_median": round(per_epoch, 3),
        "projected_3280_epochs_h": round(per_epoch * PROTOCOL_EPOCHS / 3600, 2),
        "loss_by_epoch": losses[:10] + (["..."] + losses[-3:] if len(losses) > 13 else []),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    out: dict[str, Any] = {"cuda": torch.cuda.is_available(), "torch": torch.__version__}
    section("gpu_tests", out, gpu_tests)
    section("suites", out, suites)
    if not torch.cuda.is_available():
        out["skipped"] = ["training_vs_bare", "iwae_vs_roofline", "compile", "burda_graphs"]
        out["why_skipped"] = "no CUDA device here: CPU-side checks only"
    else:
        out["device"] = torch.cuda.get_device_name()
        section("training_vs_bare", out, training_vs_bare)
        section("iwae_vs_roofline", out, iwae_vs_roofline)
        section("compile", out, compile_modes)
        section("burda_graphs", out, burda_protocol_graphs)
    out["wall_s"] = round(time.perf_counter() - START, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
