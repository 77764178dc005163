"""``ModelOutput``: a reconstruction given as a function is computed on its first read, once."""

from __future__ import annotations

import torch

from aebench import ModelOutput


def test_a_reconstruction_given_as_a_function_is_computed_once_on_first_read() -> None:
    calls: list[int] = []
    recon = torch.rand(3, 4)

    def compute() -> torch.Tensor:
        calls.append(1)
        return recon

    out = ModelOutput(code=torch.zeros(3, 2), recon=compute)
    repr(out), out.activations, out.extras
    assert calls == []
    assert out.recon is recon
    assert out.recon is recon
    assert calls == [1]


def test_a_reconstruction_given_as_a_tensor_is_that_tensor() -> None:
    recon, code, hidden = torch.rand(3, 4), torch.rand(3, 2), torch.rand(3, 5)
    out = ModelOutput(code, recon, hidden=hidden)
    assert out.recon is recon
    assert out.activations is hidden
    assert out.extras == {}
    assert ModelOutput(code, recon).activations is code
