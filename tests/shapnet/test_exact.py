"""exact_shapley: the oracle itself, checked against closed forms and the Shapley axioms."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shapnet import exact_shapley


def _random_mlp(d: int, k: int, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.Tanh(), torch.nn.Linear(16, k)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return net


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 8), k=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_linear_model_closed_form(d: int, k: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(d, k, generator=gen, dtype=torch.float64)
    x = torch.randn(3, d, generator=gen, dtype=torch.float64)
    r = torch.randn(d, generator=gen, dtype=torch.float64)
    phi = exact_shapley(lambda z: z @ w + 1.5, x, r)
    torch.testing.assert_close(phi, w.unsqueeze(0) * (x - r).unsqueeze(-1), rtol=0, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(d=st.integers(2, 8), seed=st.integers(0, 10_000))
def test_efficiency(d: int, seed: int) -> None:
    net = _random_mlp(d, 2, seed)
    gen = torch.Generator().manual_seed(seed)
    x, r = torch.randn(4, d, generator=gen, dtype=torch.float64), torch.randn(d, generator=gen, dtype=torch.float64)
    phi = exact_shapley(net, x, r)
    torch.testing.assert_close(phi.sum(1), net(x) - net(r.unsqueeze(0)), rtol=0, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(d=st.integers(3, 7), seed=st.integers(0, 10_000), data=st.data())
def test_symmetry_and_dummy(d: int, seed: int, data: st.DataObject) -> None:
    i, j = data.draw(st.lists(st.integers(0, d - 1), min_size=2, max_size=2, unique=True))
    dummy = data.draw(st.integers(0, d - 1).filter(lambda t: t not in (i, j)))
    inner = _random_mlp(d, 1, seed)

    def fn(z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        zi, zj = z[:, i].clone(), z[:, j].clone()
        z[:, i], z[:, j] = zi + zj, zi * zj  # symmetric in players i and j
        z[:, dummy] = 0.0  # the dummy player never matters
        return inner(z)

    gen = torch.Generator().manual_seed(seed)
    x, r = torch.randn(3, d, generator=gen, dtype=torch.float64), torch.randn(d, generator=gen, dtype=torch.float64)
    x[:, j] = x[:, i]
    r[j] = r[i]
    phi = exact_shapley(fn, x, r)
    torch.testing.assert_close(phi[:, i], phi[:, j], rtol=0, atol=1e-10)
    assert phi[:, dummy].abs().max() <= 1e-12


def test_chunking_does_not_change_the_result() -> None:
    net = _random_mlp(6, 3, 0)
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(exact_shapley(net, x, 0.0, chunk_size=3), exact_shapley(net, x, 0.0), rtol=0, atol=1e-12)


def test_image_shaped_inputs_and_scalar_output() -> None:
    x = torch.randn(2, 1, 2, 3, dtype=torch.float64)
    phi = exact_shapley(lambda z: z.flatten(1).sum(1) ** 2, x, torch.zeros(1, 2, 3, dtype=torch.float64))
    assert phi.shape == (2, 6, 1)
    torch.testing.assert_close(phi.sum(1).squeeze(1), x.flatten(1).sum(1) ** 2)


def test_too_many_features_is_refused() -> None:
    with pytest.raises(ValueError, match=r"F <= 20.*got F = 21"):
        exact_shapley(lambda z: z.sum(1), torch.zeros(1, 21), 0.0)


def test_reference_of_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"reference must broadcast.*\(2, 4\).*\(3,\)"):
        exact_shapley(lambda z: z.sum(1), torch.zeros(2, 4), torch.zeros(3))


def test_integer_input_is_refused() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        exact_shapley(lambda z: z.sum(1), torch.zeros(2, 4, dtype=torch.long), 0.0)
