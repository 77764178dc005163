"""Does ``[train] compile`` pay? Eager against ``torch.compile``d training steps, per model family.

The step is the trainer's own: ``make_objective`` (forward pass and the batch's mean loss), which
``[train] compile = true`` hands to ``torch.compile``, then backward and an Adam step. Each
family is built at the Burda et al. 2015 sizes (784-200-200-50, tanh, batches of 20, binary
28x28 inputs). Compilation is excluded (warm-up steps run first); eager and compiled blocks of
steps alternate in the same process, so that the machine's load moves both alike, and the
median block gives the steady-state steps per second.

    python benchmarks/perf/bench_compile.py [--device cpu|cuda] [--steps 100] [--rounds 5]

Prints one JSON object: per family, eager and compiled steps/s, their ratio, and compile time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from aebench import DataInfo
from aebench.plugins.manager import load_plugins
from aebench.run.train import make_objective

BATCH = 20
FAMILIES: dict[str, dict[str, Any]] = {
    "vae": {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh"},
    "iwae": {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh", "k": 5},
    "ae": {"latent_dim": 50, "hidden": [200, 200]},
}
INFO = DataInfo(shape=(1, 28, 28), kind="binary", n_classes=10)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    name: str, params: dict[str, Any], device: torch.device, compiled: bool, mode: str | None
) -> Callable[[torch.Tensor], None]:
    """One training step of a fresh, seeded ``name`` model: objective, backward, Adam."""
    plugins = load_plugins()
    entry = plugins.models.get(name)
    regularizer_entry = plugins.regularizers.get("none")
    torch.manual_seed(0)
    model = entry.factory(INFO, **entry.params.model_validate(params).model_dump()).to(device)
    regularizer = regularizer_entry.factory(
        **regularizer_entry.params.model_validate({}).model_dump()
    )
    objective = make_objective(model, regularizer, device, "fp32")
    if compiled:
        objective = torch.compile(objective, mode=mode)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.99, 0.999), eps=1e-4)

    def step(x: torch.Tensor) -> None:
        loss, _, _ = objective(x, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(
    step: Callable[[torch.Tensor], None], batches: torch.Tensor, device: torch.device
) -> float:
    """Seconds for one pass over ``batches`` (one step each)."""
    _sync(device)
    start = time.perf_counter()
    for x in batches:
        step(x)
    _sync(device)
    return time.perf_counter() - start


def measure(
    name: str,
    params: dict[str, Any],
    device: torch.device,
    steps: int,
    rounds: int,
    mode: str | None,
) -> dict[str, float]:
    batches = torch.rand(steps, BATCH, 1, 28, 28, device=device).round()
    eager = make_step(name, params, device, False, mode)
    compiled = make_step(name, params, device, True, mode)
    timed(eager, batches[:10], device)
    start = time.perf_counter()
    timed(compiled, batches[:10], device)  # compiles (forward and backward graphs)
    compile_s = time.perf_counter() - start
    eager_s, compiled_s = [], []
    for _ in range(rounds):  # alternate, so that the load moves both alike
        eager_s.append(timed(eager, batches, device))
        compiled_s.append(timed(compiled, batches, device))
    eager_rate = steps / statistics.median(eager_s)
    compiled_rate = steps / statistics.median(compiled_s)
    return {
        "eager_steps_per_s": round(eager_rate, 1),
        "compiled_steps_per_s": round(compiled_rate, 1),
        "speedup": round(compiled_rate / eager_rate, 3),
        "compile_s": round(compile_s, 1),
    }


def run(
    device: str = "cpu", steps: int = 100, rounds: int = 5, mode: str | None = None
) -> dict[str, Any]:
    """Eager and compiled steps/s per family on ``device``: what ``benchmarks/gpu/run.py`` and
    the command line call."""
    where = torch.device(device)
    result: dict[str, Any] = {"device": device, "threads": torch.get_num_threads(), "mode": mode}
    for name, params in FAMILIES.items():
        result[name] = measure(name, params, where, steps, rounds, mode)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: its default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(run(args.device, args.steps, args.rounds, args.mode)))


if __name__ == "__main__":
    main()
