"""A feature extractor that aebench trains itself, once per dataset: the ruler of sample quality.

FID and its kin need features in which real and generated inputs are compared. The published ones
come from an ImageNet Inception network, which is a download and knows nothing of 8x8 digits; so
aebench trains a small classifier of the dataset's classes on its training split (a small conv net
for images, an MLP otherwise), with a pinned seed, on the CPU (the same weights whatever device the
trial runs on), and measures with its penultimate layer (``features``) and its class probabilities
(``probabilities``).

It is trained once and cached in aebench's cache folder (``$AEBENCH_CACHE``, default
``~/.cache/aebench``) under a hash of everything that makes it what it is: the training and test
data's content, the architecture, the training settings and the torch version. The file is written
through a temporary name and a rename, so a killed run leaves the old file or none, never half of
one; a cache file that cannot be read is trained again.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from aebench import Data, NotApplicable, paths

CACHE_SUBFOLDER = "feature-classifiers"
FORMAT = "aebench feature classifier 1"  # changes whenever what is saved changes meaning
EVAL_BATCH = 1024


@dataclass(frozen=True)
class ClassifierSettings:
    """How the classifier is trained: part of its cache key."""

    steps: int = 500  # Adam steps of ``batch_size`` inputs (about 1 epoch of MNIST)
    max_epochs: int = 50  # and at most this many passes over a small training split
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    features: int = 128  # width of the penultimate layer: the feature space of FID


class ImageClassifier(nn.Module):
    """Two stride-2 convolutions, pooled to 4x4, then ``features`` units and the class logits."""

    def __init__(self, shape: tuple[int, ...], n_classes: int, features: int) -> None:
        super().__init__()
        channels = shape[0]
        # Standardisation of the inputs, set from the training split (buffers: kept with weights).
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),  # any image size: 8x8 digits to 64x64 sprites
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, features),
            nn.ReLU(),
        )
        self.head = nn.Linear(features, n_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body((x - self.mean) / self.std)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class VectorClassifier(nn.Module):
    """An MLP for flat data: 256 and ``features`` hidden units, then the class logits."""

    def __init__(self, shape: tuple[int, ...], n_classes: int, features: int) -> None:
        super().__init__()
        size = int(torch.Size(shape).numel())
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))
        self.body = nn.Sequential(
            nn.Linear(size, 256), nn.ReLU(), nn.Linear(256, features), nn.ReLU()
        )
        self.head = nn.Linear(features, n_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body((x.flatten(1) - self.mean) / self.std)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


Classifier = ImageClassifier | VectorClassifier


@dataclass
class FeatureExtractor:
    """A trained classifier of the dataset's classes, and its accuracy on the test split."""

    network: Classifier
    test_acc: float
    key: str  # the cache key it was found or saved under

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features (N, features), float64 on the CPU."""
        return self._batched(x, self.network.features)

    @torch.no_grad()
    def probabilities(self, x: Tensor) -> Tensor:
        """p(y|x) (N, classes), float64 on the CPU."""
        return self._batched(x, lambda b: self.network(b).softmax(-1))

    def _batched(self, x: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:
        self.network.to(x.device)  # trained on the CPU; measures where the trial's data is
        return torch.cat([f(b.float()).double().cpu() for b in x.split(EVAL_BATCH)])


def _build(data: Data, settings: ClassifierSettings) -> Classifier:
    shape, n_classes = data.info.shape, _n_classes(data)
    kind = ImageClassifier if len(shape) == 3 else VectorClassifier
    return kind(shape, n_classes, settings.features)


def _n_classes(data: Data) -> int:
    if data.train.y is None or data.test.y is None:
        raise NotApplicable("the data has no labels to train the feature classifier on")
    return data.info.n_classes or int(max(data.train.y.max(), data.test.y.max())) + 1


def cache_key(data: Data, settings: ClassifierSettings) -> str:
    """A hash of the data's content, the architecture, the training settings and torch's version."""
    digest = hashlib.sha256()
    header = {
        "format": FORMAT,
        "architecture": str(_build(data, settings)),
        "settings": asdict(settings),
        "torch": torch.__version__,
        "shape": list(data.info.shape),
    }
    if data.batch_transform is not None:  # trained on its draws: another classifier
        header["batch_transform"] = getattr(data.batch_transform, "__qualname__", "unnamed")
    digest.update(json.dumps(header, sort_keys=True).encode())
    for split in (data.train, data.test):
        for tensor in (split.x, split.y):
            array = tensor.detach().cpu().contiguous().numpy()
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:32]


def train_classifier(data: Data, settings: ClassifierSettings) -> tuple[Classifier, float]:
    """The classifier trained on the training split on the CPU, seeded, and its test accuracy;
    each batch drawn through the data's ``batch_transform`` where it has one, as the test split
    was (a dynamically binarised dataset's grey training images, binarised batch by batch)."""
    train_x, train_y = data.train.x.detach().float().cpu(), data.train.y.detach().long().cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        network = _build(data, settings)
    if isinstance(network, ImageClassifier):  # one scale for all pixels: images stay images
        network.mean.fill_(train_x.mean())
        network.std.fill_(train_x.std().clamp_min(1e-6))
    else:
        network.mean.copy_(train_x.flatten(1).mean(0))
        network.std.copy_(train_x.flatten(1).std(0).nan_to_num(1.0).clamp_min(1e-6))
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    order = torch.randperm(len(train_x), generator=generator)
    position = 0
    steps = min(settings.steps, math.ceil(settings.max_epochs * len(train_x) / settings.batch_size))
    network.train()
    with torch.enable_grad():  # metrics run without gradients; training needs them
        for _ in range(steps):
            if position + settings.batch_size > len(order):  # a new epoch, reshuffled
                order, position = torch.randperm(len(train_x), generator=generator), 0
            batch = order[position : position + settings.batch_size]
            position += settings.batch_size
            inputs = train_x[batch]
            if data.batch_transform is not None:  # the draws training sees (binarised, say)
                inputs = data.batch_transform(inputs, generator)
            loss = nn.functional.cross_entropy(network(inputs), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    network.eval()
    extractor = FeatureExtractor(network, float("nan"), "")
    predicted = extractor.probabilities(data.test.x.detach().cpu()).argmax(-1)
    test_acc = (predicted == data.test.y.detach().cpu()).double().mean().item()
    return network, test_acc


def _save(path: Path, network: Classifier, test_acc: float) -> None:
    """Through a temporary file in the same folder and a rename: all or nothing."""
    saved = {"state_dict": network.state_dict(), "test_acc": test_acc}
    paths.write_atomically(path, lambda tmp: torch.save(saved, tmp))


def _load(path: Path, data: Data, settings: ClassifierSettings) -> tuple[Classifier, float] | None:
    """The cached classifier, or None when there is none or it cannot be read."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        network = _build(data, settings)
        network.load_state_dict(saved["state_dict"])
        return network.eval(), float(saved["test_acc"])
    except Exception:  # a damaged or foreign file: train again and replace it
        return None


def feature_extractor(
    data: Data, settings: ClassifierSettings = ClassifierSettings()
) -> FeatureExtractor:
    """The dataset's classifier: from the cache, else trained now and cached.

    Raises ``NotApplicable`` for data without labels (there are no classes to learn features of).
    """
    _n_classes(data)
    key = cache_key(data, settings)
    path = paths.cache_folder() / CACHE_SUBFOLDER / f"{key}.pt"
    found = _load(path, data, settings)
    if found is None:
        found = train_classifier(data, settings)
        _save(path, *found)
    network, test_acc = found
    return FeatureExtractor(network, test_acc, key)
