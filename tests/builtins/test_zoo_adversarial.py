"""Models with a discriminator (aae, factor-vae) and the hook that trains it: each objective
against an explicit computation, and the auxiliary optimizer's place in the training loop."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from repo import REPO, SUPPORT
from torch import nn

import aebench
import aebench.run.train
from aebench import Data, DataInfo, Split, SuiteObserver
from aebench.run.auxiliary import AUXILIARY_CURVE, AuxiliaryStep
from aebench.run.checkpoint import Checkpoints
from aebench.run.optim import make_optimizer, make_schedule
from aebench.run.sections import TrainSection
from aebench.run.train import train_model
from aebench.testing import check_model, sample_batch
from aebench_plugins.models.adversarial import AAE, FactorVAE, permute_dims
from aebench_plugins.regularizers import NoRegularizer

TESTS = SUPPORT
BEFORE_THE_HOOK = "e0a9fb5"  # the commit whose training loop had no auxiliary hook
MOVED_SINCE_THE_HOOK = {  # its imports, as the layout has them now
    "from aebench import stopping": "from aebench.run import stopping",
    "from aebench.checkpoint import": "from aebench.run.checkpoint import",
    "from aebench.contracts import Data, Regularizer, Split": (
        "from aebench.contract.data import Data, Split\n"
        "from aebench.contract.model import Regularizer"
    ),
    "from aebench.data import": "from aebench.run.data import",
    "from aebench.optim import": "from aebench.run.optim import",
    "from aebench.validation import": "from aebench.run.validation import",
}
INFO = DataInfo(shape=(1, 8, 8), kind="unit")
SMALL = {"hidden": [16], "disc_hidden": [8]}


def tiny_data(n: int = 48) -> Data:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, *INFO.shape, generator=generator)
    return Data(info=INFO, train=Split(x), test=Split(x[:8]))


def train(model: nn.Module, epochs: int = 2, **options) -> aebench.run.train.TrainResult:
    return train_model(
        model,
        NoRegularizer(),
        tiny_data(),
        TrainSection(epochs=epochs, batch_size=16, lr=1e-2),
        generator=torch.Generator().manual_seed(0),
        **options,
    )


def flat(parameters) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in parameters])


# -- the objectives ------------------------------------------------------------------------------


def test_permute_dims_permutes_each_dimension_on_its_own() -> None:
    torch.manual_seed(0)
    b, d = 8, 3
    z = torch.arange(b * d, dtype=torch.float).view(b, d)  # every entry distinct: traceable
    same_row = 0.0
    draws = 400
    for _ in range(draws):
        permuted = permute_dims(z)
        for j in range(d):  # each column holds exactly the values of its own column
            assert torch.equal(permuted[:, j].sort().values, z[:, j])
        rows = (permuted // d).long()  # the row each entry came from
        same_row += (rows[:, 0] == rows[:, 1]).float().sum().item()
    # Independent uniform permutations: a row's two entries share their origin with
    # probability 1/b, so about one row of b per draw; a shared permutation would give b.
    assert same_row / draws == pytest.approx(1.0, abs=0.3)


def test_factor_vae_total_correlation_is_the_mean_log_odds_of_its_discriminator() -> None:
    torch.manual_seed(0)
    model = FactorVAE(INFO, latent_dim=3, gamma=7.0, **SMALL)
    x = sample_batch(INFO)
    out = model(x)
    terms = model.loss_terms(x, out)
    d = torch.sigmoid(model.discriminator(out.code))  # D(z): the probability "from q(z)"
    assert torch.allclose(terms["tc"], torch.log(d / (1 - d)), atol=1e-5)
    vae_loss = terms["distortion"] + terms["rate"]  # beta = 1
    assert torch.allclose(model.loss(x, out), vae_loss + 7.0 * torch.log(d / (1 - d)), atol=1e-4)


def test_factor_vae_discriminator_separates_codes_from_permuted_codes() -> None:
    torch.manual_seed(0)
    model = FactorVAE(INFO, latent_dim=3, **SMALL)
    z = torch.randn(16, 3)
    out = aebench.ModelOutput(code=z, recon=torch.zeros(16, *INFO.shape))
    torch.manual_seed(5)
    loss = model.auxiliary_loss(sample_batch(INFO), out)
    torch.manual_seed(5)
    permuted = permute_dims(z)  # the same draw
    d_real = torch.sigmoid(model.discriminator(z))
    d_fake = torch.sigmoid(model.discriminator(permuted))
    expected = 0.5 * (-torch.log(d_real) - torch.log(1 - d_fake))
    assert torch.allclose(loss, expected, atol=1e-5)


def test_aae_losses_are_the_gan_cross_entropies() -> None:
    torch.manual_seed(0)
    model = AAE(INFO, latent_dim=3, adversarial_weight=0.5, **SMALL)
    x = sample_batch(INFO)
    out = model(x)
    d_code = torch.sigmoid(model.discriminator(out.code))
    reconstruction = F.binary_cross_entropy(out.recon, x, reduction="none").flatten(1).sum(1)
    expected = reconstruction + 0.5 * -torch.log(d_code)  # the encoder wants D(code) -> 1
    assert torch.allclose(model.loss(x, out), expected, atol=1e-3)
    torch.manual_seed(3)
    loss = model.auxiliary_loss(x, out)
    torch.manual_seed(3)
    prior = torch.randn(len(x), 3)  # N(0, I): the same draw as prior().sample
    d_prior = torch.sigmoid(model.discriminator(prior))
    assert torch.allclose(loss, -torch.log(d_prior) - torch.log(1 - d_code), atol=1e-5)


@pytest.mark.parametrize("factory", [AAE, FactorVAE])
def test_adversarial_models_keep_the_contract(factory) -> None:
    check_model(factory, params=SMALL, shapes=((64,), (1, 8, 8)))


# -- the auxiliary hook in the training loop ----------------------------------------------------


def test_the_main_optimizer_leaves_the_discriminator_to_its_own(monkeypatch) -> None:
    made: list[torch.optim.Optimizer] = []
    original = aebench.run.train.make_optimizer

    def recording(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    steps: list[AuxiliaryStep] = []
    original_init = AuxiliaryStep.__init__

    def keeping(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        steps.append(self)

    monkeypatch.setattr(aebench.run.train, "make_optimizer", recording)
    monkeypatch.setattr(AuxiliaryStep, "__init__", keeping)
    torch.manual_seed(0)
    model = FactorVAE(INFO, latent_dim=3, disc_lr=1e-3, **SMALL)
    result = train(model)
    [main], [auxiliary] = made, steps

    def ids(optimizer: torch.optim.Optimizer) -> set[int]:
        return {id(p) for group in optimizer.param_groups for p in group["params"]}

    discriminator = {id(p) for p in model.discriminator.parameters()}
    everything = {id(p) for p in model.parameters()}
    assert ids(main) == everything - discriminator
    assert ids(auxiliary.optimizer) == discriminator
    group = auxiliary.optimizer.param_groups[0]  # the model's own settings over the trial's
    assert group["lr"] == 1e-3 and group["betas"] == (0.5, 0.9)
    assert main.param_groups[0]["lr"] == 1e-2
    assert len(result.curves[AUXILIARY_CURVE]) == 2
    assert all(torch.isfinite(torch.tensor(result.curves[AUXILIARY_CURVE])))


def test_only_the_auxiliary_step_moves_the_discriminator(monkeypatch) -> None:
    def trained(step: bool) -> tuple[torch.Tensor, torch.Tensor, AAE]:
        torch.manual_seed(0)
        model = AAE(INFO, latent_dim=3, **SMALL)
        before = flat(model.discriminator.parameters()), flat(model.encoder.parameters())
        with monkeypatch.context() as patch:
            if not step:  # the main step still back-propagates through the discriminator
                patch.setattr(AuxiliaryStep, "step", lambda self, x: None)
            train(model)
        moved = (
            flat(model.discriminator.parameters()) - before[0],
            flat(model.encoder.parameters()) - before[1],
        )
        return *moved, model

    disc, encoder, _ = trained(step=False)
    assert torch.equal(disc, torch.zeros_like(disc))  # the main optimizer never touched it
    assert encoder.abs().sum() > 0
    disc, encoder, _ = trained(step=True)
    assert disc.abs().sum() > 0 and encoder.abs().sum() > 0


def test_a_model_with_parameters_but_no_auxiliary_loss_is_refused() -> None:
    class HalfDeclared(AAE):
        auxiliary_loss = None

    torch.manual_seed(0)
    with pytest.raises(TypeError, match="no auxiliary_loss"):
        train(HalfDeclared(INFO, latent_dim=3, **SMALL))


def test_a_resumed_adversarial_run_ends_as_an_uninterrupted_one(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"

    def run() -> tuple[aebench.run.train.TrainResult, AAE]:
        torch.manual_seed(0)
        model = AAE(INFO, latent_dim=3, **SMALL)
        return train(model, epochs=3, checkpoints=Checkpoints(path, "t", 1)), model

    whole, whole_model = run()
    resumed, resumed_model = run()  # from the checkpoint of epoch 2: its optimizers' states too
    assert resumed.resumed_after == 2
    assert resumed.curves[AUXILIARY_CURVE] == whole.curves[AUXILIARY_CURVE]
    assert torch.equal(flat(whole_model.parameters()), flat(resumed_model.parameters()))


def _loop_before_the_hook():
    """aebench/train.py as it was before the hook, imported from git, or None outside a clone."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BEFORE_THE_HOOK}:aebench/train.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for before, now in MOVED_SINCE_THE_HOOK.items():  # the modules it imports have moved since
        source = source.replace(before, now)
    spec = importlib.util.spec_from_loader("train_before_the_hook", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, "train_before_the_hook.py", "exec"), module.__dict__)
    # It called the optimizer and the schedule with loose settings; they take [train] whole now.
    module.make_optimizer = lambda model, lr, settings: make_optimizer(
        model, TrainSection(lr=lr, **(settings or {}))
    )
    module.make_schedule = lambda optimizer, schedule, epochs: make_schedule(
        optimizer, TrainSection(epochs=epochs, **({"schedule": schedule} if schedule else {}))
    )
    return module


def test_a_model_without_the_hook_trains_exactly_as_before(plugins) -> None:
    before = _loop_before_the_hook()
    if before is None:
        pytest.skip(f"needs the git history ({BEFORE_THE_HOOK})")
    results = []
    settings = {"epochs": 2, "batch_size": 16, "lr": 1e-2}
    for loop in (before.train_model, train_model):
        torch.manual_seed(0)
        model = plugins.models.get("vae").factory(INFO, latent_dim=2, hidden=[8])
        typed = () if loop is before.train_model else (TrainSection(**settings),)
        result = loop(
            model,
            NoRegularizer(),
            tiny_data(),
            *typed,
            generator=torch.Generator().manual_seed(0),
            **(settings if loop is before.train_model else {}),
        )
        results.append((result.curves, flat(model.parameters())))
    (old_curves, old_weights), (new_curves, new_weights) = results
    assert new_curves == old_curves
    assert torch.equal(new_weights, old_weights)


# -- a third party's adversarial model, through the public contract ------------------------------


class Keep(SuiteObserver):
    def __init__(self) -> None:
        self.outcomes = []

    def trial_finished(self, trial, row, outcome) -> None:
        self.outcomes.append((trial, row, outcome))


def test_a_third_party_adversarial_model_trains_through_the_public_contract(tmp_path) -> None:
    sys.path.insert(0, str(TESTS))
    try:
        import aebench_adversarial
    finally:
        sys.path.remove(str(TESTS))
    check_model(aebench_adversarial.TinyAdversarialAE, shapes=((64,),))
    plugins = aebench.load_plugins(
        extra=[aebench_adversarial],
        blocked=["aebench.figures", "aebench.report", "aebench.mlflow"],
    )
    suite = {
        "suite": {"name": "adversarial", "seeds": [0], "device": "cpu"},
        "observers": {"mlflow": {"enabled": False}},
        "train": {"epochs": 2, "batch_size": 128},
        "eval": {"metrics": ["recon_mse"]},
        "datasets": [{"plugin": "digits"}],
        "models": [{"plugin": "tiny-adversarial-ae", "params": {"latent_dim": 2}}],
    }
    keep = Keep()
    run = aebench.run_suite(suite, output=tmp_path / "out", plugins=plugins, observers=[keep])
    assert run.counts == {"ok": 1}
    [(trial, row, outcome)] = keep.outcomes
    assert row["recon_mse"] > 0
    assert len(outcome.curves[AUXILIARY_CURVE]) == 2
    torch.manual_seed(trial.seed)  # the weights it started from
    fresh = aebench_adversarial.TinyAdversarialAE(outcome.data.info, latent_dim=2)
    assert not torch.equal(flat(fresh.critic.parameters()), flat(outcome.model.critic.parameters()))
