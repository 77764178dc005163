"""Mid-trial checkpoints: a killed trial resumes from its last one, and ends as if never stopped.

A checkpoint holds everything the rest of training depends on: the model's and the optimizer's
state, the random states (the trial's generator and torch's global stream, which a VAE's sampling
draws from), the epoch, the curves so far and the time trained. It is replaced atomically, and
read back with ``weights_only=True``. One that cannot be read, or that belongs to another trial, is
ignored with a warning line, and the trial starts over: never a crash, never a wrong resume.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aebench.results.confined import inside_root
from aebench.results.files import FolderError, write_atomically
from aebench.results.weights import WeightsError, load_weights

if TYPE_CHECKING:
    from torch import nn

    from aebench.run.validation import EarlyStopping

FORMAT = 1
DEFAULT_SECONDS = 60.0  # without [train] checkpoint_every: about once a minute of training
REQUIRED = (
    *("epoch", "model", "optimizer", "scheduler", "watch", "generator", "torch_rng", "curves"),
    "train_s",
)

log = logging.getLogger("aebench")


def _warn(message: str) -> None:
    log.warning(message)
    print(f"aebench: {message}", file=sys.stderr)


class UnusableCheckpoint(ValueError):
    """A checkpoint file that cannot be used; ``str(error)`` says why."""


class Checkpoints:
    """One trial's checkpoint file, and when the next one is due."""

    def __init__(
        self,
        path: Path,
        trial_id: str,
        every: int | None = None,
        seconds: float = DEFAULT_SECONDS,
        root: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.root = root  # the results folder: no link between it and the file (None: unchecked)
        self.trial_id = trial_id
        self.every = every  # epochs between checkpoints; None: by time
        self.seconds = seconds
        self._last = time.monotonic()
        self._broken = False  # a folder we cannot write to: training goes on without

    def due(self, epoch: int) -> bool:
        if self._broken:
            return False
        if self.every is not None:
            return epoch % self.every == 0
        return time.monotonic() - self._last >= self.seconds

    def save(self, state: dict[str, Any]) -> None:
        payload = {"format": FORMAT, "trial_id": self.trial_id, **state}
        try:
            path = self.path if self.root is None else inside_root(Path(self.root), self.path)
            write_atomically(path, lambda p: torch.save(payload, p))
        except (OSError, FolderError) as exc:
            self._broken = True
            _warn(f"{self.path}: cannot write checkpoints ({exc}); training goes on without")
        self._last = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The last checkpoint of this trial to resume from, or None (none; unreadable, or
        another trial's, said in a warning line)."""
        try:
            return self.read()
        except UnusableCheckpoint as exc:
            _warn(f"{self.path}: checkpoint ignored, {exc}; trial {self.trial_id} starts over")
            return None

    def read(self) -> dict[str, Any] | None:
        """The last checkpoint of this trial, or None where there is none; ``UnusableCheckpoint``
        saying why for one that cannot be read, or belongs to another trial."""
        if not self.path.is_file():
            return None
        try:
            state = load_weights(self.path, "cpu", name="checkpoint")
        except WeightsError as exc:  # truncated, foreign, or a pickle that would run code
            raise UnusableCheckpoint(str(exc)) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise UnusableCheckpoint("not a checkpoint of this aebench")
        if state.get("trial_id") != self.trial_id:
            raise UnusableCheckpoint(f"a checkpoint of trial {state.get('trial_id')}")
        missing = [key for key in REQUIRED if key not in state]
        if missing:
            raise UnusableCheckpoint(f"incomplete (no {', '.join(missing)})")
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def checkpoint_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    scheduler: Any,
    watch: EarlyStopping,
    *,
    epoch: int,
    train_s: float,
    curves: dict[str, list[float]],
    timed: tuple[float, int],
) -> dict[str, Any]:
    """What a checkpoint after ``epoch`` holds: all the rest of training depends on, as
    ``restore_checkpoint`` and ``Training._resume`` read it back (a stacked group's trials too).
    ``timed``: the seconds and samples of the epochs that samples/s counts."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),  # the global stream: a VAE's samples come from it
        "scheduler": scheduler.state_dict(),
        "watch": watch.state_dict(),
        "epoch": epoch,
        "train_s": train_s,
        "curves": curves,
        "timed_s": timed[0],
        "timed_samples": timed[1],
    }
    if generator.device.type == "cuda":  # the trial's device, the generator's
        state["cuda_rng"] = torch.cuda.get_rng_state(generator.device)
    return state


def restore_checkpoint(
    state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, generator, device
) -> None:
    """The model, optimizer, generator and torch's stream as a checkpoint holds them."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state["generator"].numel() == generator.get_state().numel():
        generator.set_state(state["generator"])
    else:  # saved on another kind of device, whose stream cannot carry over: a seeded new one
        generator.manual_seed(generator.initial_seed() + state["epoch"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
