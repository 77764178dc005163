"""MNIST, Fashion-MNIST, KMNIST and CIFAR-10 through ``torchvision.datasets``.

The raw tensors are read straight from the dataset objects (``.data``, ``.targets``): no
per-sample transforms, no DataLoader. Files live under ``root``: by default the ``AEBENCH_DATA``
environment variable, else ``~/.cache/aebench/data``, resolved when the dataset is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from aebench import Data, Split, paths
from aebench_plugins.datasets.images import Binarize, Count, ValFraction, image_data

DEFAULT_ROOT = "~/.cache/aebench/data"

Root = Annotated[
    str | None,
    Field(description=f"data folder; None: $AEBENCH_DATA, else {DEFAULT_ROOT}"),
]


class MissingDataError(FileNotFoundError):
    """A dataset's files are absent and could not be downloaded; the message is one line."""


def data_root(root: str | None) -> Path:
    """The folder that holds (or will hold) the files: ``root``, $AEBENCH_DATA, or the default."""
    return Path(root or os.environ.get("AEBENCH_DATA") or DEFAULT_ROOT).expanduser()


@dataclass(frozen=True)
class Source:
    """One torchvision dataset: its class, and how its files are laid out under ``root``."""

    name: str  # the plugin's name
    class_name: str  # in torchvision.datasets
    description: str

    def torchvision_class(self) -> Any:
        import torchvision.datasets  # imported here: `aebench list` stays fast

        return getattr(torchvision.datasets, self.class_name)

    def expected(self, root: Path) -> tuple[Path, list[str], str]:
        """The folder, the file names in it, and how to put them there by hand."""
        cls = self.torchvision_class()
        if hasattr(cls, "resources"):  # the MNIST family: gzipped idx files, stored unzipped
            archives = [name for name, _ in cls.resources]
            files = [os.path.splitext(name)[0] for name in archives]
            how = f"put them there, gunzipped from {cls.mirrors[0]}"
            return root / cls.__name__ / "raw", files, how
        files = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return root / cls.base_folder, files, f"unpack {cls.url} in {root}"

    def missing(self, root: Path, download_error: Exception | None = None) -> MissingDataError:
        """One short line: where the files were looked for, why they are not there, what to do
        (``download = true`` is suggested only where it was off)."""
        folder, files, how = self.expected(root)
        why = "" if download_error is None else f" and the download failed ({_why(download_error)})"
        fixes = f"{how}, or set root (or AEBENCH_DATA) to a folder with them"
        if download_error is None:
            fixes += ", or set download = true where there is network access"
        found = f"dataset files not found: {', '.join(files)} in {folder}{why}"
        return MissingDataError(f"{found}; {fixes}")

    def load(self, root: Path, download: bool) -> tuple[Split, Split]:
        """The raw train and test splits: uint8 images (N, C, H, W) and int64 labels."""
        cls = self.torchvision_class()
        try:
            sets = [cls(str(root), train=train, download=False) for train in (True, False)]
        except RuntimeError:  # torchvision's "Dataset not found"
            if not download:
                raise self.missing(root) from None
            if why := paths.writable_place_problem(root):  # root = "/etc" would create /etc/MNIST
                folder = self.expected(root)[0]
                raise MissingDataError(f"{folder}: no dataset files, and {why}") from None
            try:
                sets = [cls(str(root), train=train, download=True) for train in (True, False)]
            except Exception as exc:  # no network, no write access, a bad archive
                raise self.missing(root, exc) from None
        train, test = (_raw_split(s) for s in sets)
        return train, test


def _why(error: Exception) -> str:
    """A failed download in a few words: torchvision's message repeats every mirror's URL."""
    text = " ".join(str(error).split())
    if any(sign in text for sign in ("urlopen error", "Name or service", "unreachable")):
        return "no network"
    return f"{type(error).__name__}: {text[:120]}"


def _raw_split(dataset: Any) -> Split:
    x = torch.as_tensor(dataset.data)
    # MNIST-like sets hold (N, H, W) tensors; CIFAR holds an (N, H, W, C) numpy array
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    return Split(x, torch.as_tensor(dataset.targets, dtype=torch.long))


def _image_factory(source: Source) -> Callable[..., Data]:
    """The plugin's factory: its signature is its parameters, the same for every image set."""

    def factory(
        root: Root = None,
        download: bool = True,
        n_train: Count = None,
        n_test: Count = None,
        val_fraction: ValFraction = 0.0,
        binarize: Binarize = "none",
        seed: int = 0,
    ) -> Data:
        train, test = source.load(data_root(root), download)
        return image_data(
            source.name,
            train,
            test,
            n_classes=10,
            n_train=n_train,
            n_test=n_test,
            val_fraction=val_fraction,
            binarize=binarize,
            seed=seed,
        )

    factory.__name__ = factory.__qualname__ = source.name.replace("-", "_")
    factory.__doc__ = (
        f"{source.description}; seeded subsets (n_train, n_test), validation split and binarisation"
    )
    return factory


MNIST = Source("mnist", "MNIST", "MNIST handwritten digits (60,000 + 10,000, 1x28x28)")
FASHION_MNIST = Source(
    "fashion-mnist", "FashionMNIST", "Fashion-MNIST clothing (60,000 + 10,000, 1x28x28)"
)
KMNIST = Source("kmnist", "KMNIST", "Kuzushiji-MNIST cursive Japanese (60,000 + 10,000, 1x28x28)")
CIFAR10 = Source("cifar10", "CIFAR10", "CIFAR-10 colour images (50,000 + 10,000, 3x32x32)")

mnist = _image_factory(MNIST)
fashion_mnist = _image_factory(FASHION_MNIST)
kmnist = _image_factory(KMNIST)
cifar10 = _image_factory(CIFAR10)
