"""Convolutional variants of the families that are used on images: ``conv-<name>``.

The disentangling objectives are studied on images with convolutional networks
(disentanglement_lib trains beta-VAE, AnnealedVAE, FactorVAE, DIP-VAE I/II and beta-TCVAE on
64x64 dSprites with a conv encoder and decoder), and so are the MMD and deterministic families
(InfoVAE, WAE-MMD, RAE and VQ-VAE report image results from conv networks; the adversarial
autoencoder's paper used MLPs, but it is compared on images with conv networks, as pythae does).
Each variant is generated from its MLP family by ``conv_variant``: the family's class with
``networks = conv_networks``, so the objective, distributions and extra optimizers are the same
code; only the encoder and decoder change, to aebench's stride-2 ``ConvEncoder`` and its mirror
(``channels`` per layer, each halving the image; ``channels = [32, 32, 64, 64]`` has
disentanglement_lib's widths, with 3x3 rather than 4x4 kernels). Its parameters are the family's,
``channels`` in place of ``hidden``; its name is the family's with ``conv-`` before it; only its
description is written here. The beta-VAE is ``conv-vae`` (vae.py) with its ``beta``.

Left MLP-only, as in their papers: the importance-weighted family (``iwae``, ``miwae``,
``piwae``, ``ciwae``) and the two-layer models (Burda et al. 2015, Rainforth et al. 2018: MLPs on
binarised MNIST), the flows (``planar-vae``, and ``iaf-vae`` in its MLP form: the IAF paper's
ResNet VAE is another model) and ``vampprior`` (its pseudo-inputs pass through the encoder; the
paper's convolutional results use other, PixelCNN-decoder models). A conv model needs (C, H, W)
images: on flat data it is a one-line error naming the model.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from aebench_plugins.models.adversarial import AAE, FactorVAE
from aebench_plugins.models.ae import AE
from aebench_plugins.models.architectures import CONV_CHANNELS, conv_networks
from aebench_plugins.models.disentangling import DIPVAEI, DIPVAEII, AnnealedVAE, BetaTCVAE
from aebench_plugins.models.mmd import InfoVAE, build_wae, wae_mmd
from aebench_plugins.models.rae import RAE
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import Channels
from aebench_plugins.models.vqvae import VQVAE

Family = TypeVar("Family", bound=Callable[..., nn.Module])


def conv_variant(family: Family, doc: str, build: Callable[..., nn.Module] | None = None) -> Family:
    """``conv-<family's name>``, registered: the family on ``conv_networks``, for images only.

    A family class gives a subclass whose ``networks`` are ``conv_networks``; a factory function
    gives a function that calls ``build``, its builder, with the networks and the name first.
    Either takes the family's parameters with ``hidden`` replaced, in its place, by ``channels``
    (at least one layer, ``CONV_CHANNELS`` by default): its signature, the schema aebench reads,
    is derived from the family's, so the two cannot drift apart.
    """
    name = f"conv-{family.model_name}"  # type: ignore[attr-defined]
    if inspect.isclass(family):
        signature = _with_channels(family.__init__)

        def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
            family.__init__(self, **_family_arguments(signature, self, *args, **kwargs))

        _give_signature(__init__, signature, f"Conv{family.__name__}.__init__")
        namespace = {
            "__init__": __init__,
            "__doc__": doc,
            "__module__": __name__,
            "networks": staticmethod(conv_networks),
            "image_only": True,
        }
        return register_model(name)(type(f"Conv{family.__name__}", (family,), namespace))
    if build is None:
        raise TypeError(f"{name}: a factory function's conv variant needs its builder")
    signature = _with_channels(family)

    def variant(*args: Any, **kwargs: Any) -> nn.Module:
        return build(conv_networks, name, **_family_arguments(signature, *args, **kwargs))

    _give_signature(variant, signature, f"conv_{family.__name__}")
    variant.__doc__ = doc
    variant.image_only = True  # type: ignore[attr-defined]
    return register_model(name)(variant)  # type: ignore[return-value]


def _with_channels(function: Callable[..., Any]) -> inspect.Signature:
    """The function's signature, its annotations resolved, ``hidden`` made ``channels``."""
    hints = typing.get_type_hints(function, include_extras=True)
    signature = inspect.signature(function)
    parameters = [
        p.replace(name="channels", annotation=Channels, default=CONV_CHANNELS)
        if p.name == "hidden"
        else p.replace(annotation=hints.get(p.name, p.empty))
        for p in signature.parameters.values()
    ]
    return signature.replace(parameters=parameters, return_annotation=hints.get("return"))


def _give_signature(
    function: Callable[..., Any], signature: inspect.Signature, qualname: str
) -> None:
    """Make ``function`` show ``signature`` to ``inspect`` and ``typing.get_type_hints``."""
    function.__signature__ = signature  # type: ignore[attr-defined]
    function.__annotations__ = {
        p.name: p.annotation for p in signature.parameters.values() if p.annotation is not p.empty
    } | {"return": signature.return_annotation}
    function.__name__ = qualname.rpartition(".")[2]
    function.__qualname__ = qualname
    function.__module__ = __name__


def _family_arguments(signature: inspect.Signature, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A call's arguments by name (but ``self``), defaults filled in, ``channels`` handed on as
    ``hidden``."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = {name: value for name, value in bound.arguments.items() if name != "self"}
    arguments["hidden"] = arguments.pop("channels")
    return arguments


ConvAE = conv_variant(
    AE, """Convolutional autoencoder for (C, H, W) images: stride-2 convolutions, a dense code."""
)
ConvBetaTCVAE = conv_variant(
    BetaTCVAE,
    """β-TCVAE (Chen et al. 2018), conv networks for (C, H, W) images; ELBO and log p(x) apply.

    ``beta-tcvae``'s objective (MWS estimate of the total correlation) on a ``ConvEncoder`` of
    ``channels`` and its mirror; see ``beta-tcvae`` for the terms and weights.
    """,
)
ConvDIPVAEI = conv_variant(
    DIPVAEI,
    """DIP-VAE-I (Kumar et al. 2018), conv networks for (C, H, W) images; ELBO, log p(x) apply.

    ``dip-vae-i``'s objective (Cov of the posterior means pulled to I) on conv networks.
    """,
)
ConvDIPVAEII = conv_variant(
    DIPVAEII,
    """DIP-VAE-II (Kumar et al. 2018), conv networks for (C, H, W) images; ELBO, log p(x) apply.

    ``dip-vae-ii``'s objective (Cov of q(z) pulled to I) on conv networks.
    """,
)
ConvAnnealedVAE = conv_variant(
    AnnealedVAE,
    """AnnealedVAE (Burgess et al. 2018), conv networks for (C, H, W) images; ELBO, log p(x) apply.

    ``annealed-vae``'s objective (gamma |KL - C|, C raised linearly) on conv networks.
    """,
)
ConvFactorVAE = conv_variant(
    FactorVAE,
    """FactorVAE (Kim & Mnih 2018), conv networks for (C, H, W) images; ELBO, log p(x) apply.

    ``factor-vae``'s objective (gamma TC by a discriminator with its own optimizer) on conv
    networks; the discriminator stays an MLP on the codes, as in the paper.
    """,
)
ConvInfoVAE = conv_variant(
    InfoVAE,
    """InfoVAE / MMD-VAE (Zhao et al. 2017), conv networks for (C, H, W) images; ELBO applies.

    ``infovae``'s objective (KL weighted by 1 - alpha, MMD by alpha + lam - 1) on conv networks;
    a latent-variable model: the ELBO and log p(x) estimators apply.
    """,
)
conv_wae_mmd = conv_variant(
    wae_mmd,
    """WAE-MMD (Tolstikhin et al. 2018), conv networks for images; deterministic: no ELBO.

    ``wae-mmd`` on conv networks: deterministic (no posterior: no ELBO or log p(x), a prior to
    sample from) or with a Gaussian encoder (a latent-variable model: ELBO and log p(x) apply).
    """,
    build=build_wae,
)
ConvRAE = conv_variant(
    RAE,
    """RAE (Ghosh et al. 2020), conv networks for (C, H, W) images; no ELBO, ex-post GMM density.

    ``rae``'s objective (embedding norm, L2 or gradient penalty on the decoder) and ex-post
    Gaussian mixture on conv networks; deterministic: reconstruction and code metrics apply.
    """,
)
ConvVQVAE = conv_variant(
    VQVAE,
    """VQ-VAE (van den Oord et al. 2017), conv networks for (C, H, W) images; no ELBO.

    ``vq-vae``'s codebook, straight-through estimator and losses on conv networks (the encoder's
    linear head gives the ``latent_dim`` numbers that are quantised); reconstruction and code
    metrics apply, the prior for sampling is uniform over the codebook.
    """,
)
ConvAAE = conv_variant(
    AAE,
    """Adversarial AE (Makhzani et al. 2016), conv networks for (C, H, W) images; no ELBO.

    ``aae``'s objective (codes matched to N(0, I) by an MLP discriminator with its own optimizer)
    on conv networks; reconstruction and code metrics apply.
    """,
)
