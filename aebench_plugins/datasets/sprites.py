"""Binary images of one sprite (a square, an ellipse or a heart), drawn from its factor values.

A pixel is on when its centre lies inside the sprite. Each pixel centre is carried into the
sprite's own frame (moved to its centre, turned back by its orientation, divided by its size), and
the shape's inequality is checked there, for every pixel of every image at once: no Python loop
over images or pixels.

Image coordinates run over [0, 1] on both axes: ``u`` from the left edge, ``v`` from the top; the
pixel in row ``i``, column ``j`` of a ``size`` x ``size`` image has its centre at
``((j + 0.5) / size, (i + 0.5) / size)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

SHAPES = ("square", "ellipse", "heart")
CHUNK = 1024  # images drawn at a time: bounds the (chunk, size, size) temporaries
ELLIPSE_ASPECT = 0.5  # the ellipse's minor half-axis over its major half-axis
# The heart (x^2 + y^2 - 1)^3 <= x^2 y^3 spans x in [-1.14, 1.14], y in [-0.96, 1.23]: scaled by
# HEART_ZOOM and lifted by HEART_LIFT it fits the sprite's [-1, 1] box, centred.
HEART_ZOOM, HEART_LIFT = 1.14, 0.135


@dataclass(frozen=True)
class Geometry:
    """Where sprites go in an image and how large they are, in image units ([0, 1]).

    - ``half``: the half-side of a square of scale 1 (an ellipse's major half-axis, a heart's
      half-width); a sprite of scale ``s`` has half-side ``s * half``.
    - ``margin``: the centre of a sprite at position 0 (and, mirrored, at 1): positions
      ``0 .. 1`` are centres ``margin .. 1 - margin``.
    """

    half: float
    margin: float

    def centre(self, position: Tensor) -> Tensor:
        """The centre, in image units, of a sprite at ``position`` in [0, 1]."""
        return self.margin + (1.0 - 2.0 * self.margin) * position


def _square(p: Tensor, q: Tensor) -> Tensor:
    return torch.maximum(p.abs(), q.abs()) <= 1.0


def _ellipse(p: Tensor, q: Tensor) -> Tensor:
    return p * p + (q * q).mul_(1.0 / ELLIPSE_ASPECT**2) <= 1.0


def _heart(p: Tensor, q: Tensor) -> Tensor:
    hx, hy = p * HEART_ZOOM, (q - HEART_LIFT).mul_(-HEART_ZOOM)  # y up for the heart's equation
    hx2 = hx * hx
    r = hx2 + hy * hy - 1.0
    return r * r * r <= hx2 * hy * hy * hy


# Whether the points (p, q) of the sprite's frame (q pointing down, like v) lie in the shape.
INSIDE = (_square, _ellipse, _heart)  # in SHAPES' order


def _draw(
    inside: Callable[[Tensor, Tensor], Tensor], factors: Tensor, size: int, geometry: Geometry
) -> Tensor:
    """Images (N, size, size) of N sprites of one shape; ``factors`` (4, N): their scale, angle,
    x and y."""
    scale, angle, x, y = factors
    grid = (torch.arange(size, device=x.device, dtype=torch.float32) + 0.5) / size
    u = grid.view(1, 1, size) - geometry.centre(x).view(-1, 1, 1)  # (N, 1, W)
    v = grid.view(1, size, 1) - geometry.centre(y).view(-1, 1, 1)  # (N, H, 1)
    radius = scale * geometry.half
    cos = (torch.cos(angle) / radius).view(-1, 1, 1)
    sin = (torch.sin(angle) / radius).view(-1, 1, 1)
    # Rotating the sprite by `angle` (counter-clockwise on screen, v pointing down) is rotating the
    # pixel offsets back by it, and dividing by its size puts them in the sprite's frame.
    p = cos * u - sin * v
    q = sin * u + cos * v
    return inside(p, q).to(torch.float32)


def render_sprites(
    shape: Tensor,
    scale: Tensor,
    angle: Tensor,
    x: Tensor,
    y: Tensor,
    *,
    size: int,
    geometry: Geometry,
) -> Tensor:
    """Binary images ``(N, 1, size, size)`` (float32, 0 or 1) of N sprites, on ``x``'s device.

    ``shape``: (N,) indices into SHAPES; ``scale``: (N,) sizes relative to ``geometry.half``;
    ``angle``: (N,) orientations in radians; ``x``, ``y``: (N,) positions in [0, 1].
    """
    device = x.device
    images = torch.zeros(len(x), size, size, device=device)
    factors = torch.stack([t.to(device, torch.float32) for t in (scale, angle, x, y)])
    for index, inside in enumerate(INSIDE):  # each image is tested against its own shape only
        which = (shape.to(device) == index).nonzero().squeeze(1)
        for part in which.split(CHUNK):
            images[part] = _draw(inside, factors[:, part], size, geometry)
    return images.unsqueeze(1)
