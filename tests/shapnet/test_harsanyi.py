"""HarsanyiNet: exact Shapley values in one forward pass, checked against brute-force enumeration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import shapnet
from shapnet import HarsanyiNet, VisionHarsanyiNet, exact_shapley


def _tabular(seed: int, n_features: int = 6, **kwargs) -> HarsanyiNet:
    torch.manual_seed(seed)
    return HarsanyiNet(n_features, 3, reference=torch.randn(n_features), **kwargs).double()


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    n_features=st.integers(1, 8),
    hidden=st.lists(st.integers(1, 12), min_size=1, max_size=3),
    child_ratio=st.floats(0.05, 1.0),
)
def test_tabular_values_are_exact(seed: int, n_features: int, hidden: list[int], child_ratio: float) -> None:
    model = _tabular(seed, n_features, hidden=hidden, child_ratio=child_ratio)
    x = torch.randn(4, n_features, dtype=torch.float64)
    ex = model.explain(x)
    torch.testing.assert_close(ex.values, exact_shapley(model, x, model.reference), atol=1e-9, rtol=0)
    torch.testing.assert_close(ex.predictions, model(x), atol=1e-12, rtol=0)


def test_vision_values_are_exact_per_pixel() -> None:
    torch.manual_seed(1)
    model = VisionHarsanyiNet(1, 3, image_size=(3, 4), channels=4, n_layers=3, reference=torch.tensor([0.2]))
    model = model.double()
    with torch.no_grad():
        for readout in model.readout:
            readout.normal_()  # large dividends, so that an error would show
    x = torch.randn(2, 1, 3, 4, dtype=torch.float64)
    ex = model.explain(x)
    exact = exact_shapley(model, x, model.reference)  # (B, 12, K): pixels as players
    assert exact.abs().max() > 0.1
    torch.testing.assert_close(ex.values.reshape(2, 12, 3), exact, atol=1e-9, rtol=0)


def test_missingness_and_base_value() -> None:
    model = _tabular(0, hidden=(10, 10), child_ratio=0.5)
    x = torch.randn(3, 6, dtype=torch.float64)
    x[:, 2] = model.reference[2]
    ex = model.explain(x)
    assert torch.equal(ex.values[:, 2], torch.zeros_like(ex.values[:, 2]))
    at_reference = model.explain(model.reference.unsqueeze(0))
    torch.testing.assert_close(at_reference.predictions, model.bias.detach().unsqueeze(0).double())
    assert torch.equal(at_reference.values, torch.zeros_like(at_reference.values))


def test_receptive_fields_grow_through_the_children() -> None:
    model = _tabular(3, n_features=8, hidden=(6, 5), child_ratio=0.4)
    first, second = model.receptive_fields()
    assert torch.equal(first, model.tau[0] > 0)
    children = model.tau[1] > 0
    expected = torch.stack([first[c].any(0) if c.any() else torch.zeros(8, dtype=torch.bool) for c in children])
    assert torch.equal(second, expected)


def test_children_are_trained_through_the_straight_through_estimator() -> None:
    model = _tabular(0, hidden=(8,), child_ratio=0.5)
    x = torch.randn(16, 6, dtype=torch.float64)
    model(x).pow(2).sum().backward()
    assert model.tau[0].grad is not None and model.tau[0].grad.abs().sum() > 0


def test_layer_values_sum_to_the_values() -> None:
    model = _tabular(2, hidden=(7, 7, 7), child_ratio=0.5)
    ex = model.explain(torch.randn(5, 6, dtype=torch.float64), layers=True)
    assert len(ex.layers) == 3
    torch.testing.assert_close(sum(ex.layers), ex.values)


def test_only_its_own_reference() -> None:
    model = _tabular(0)
    with pytest.raises(ValueError, match="reference"):
        model.explain(torch.randn(2, 6, dtype=torch.float64), baseline=torch.ones(6, dtype=torch.float64))


def test_save_and_load_round_trip(tmp_path) -> None:
    for model, x in [
        (_tabular(0).float(), torch.randn(3, 6)),
        (VisionHarsanyiNet(2, 4, image_size=5, channels=3), torch.randn(3, 2, 5, 5)),
    ]:
        shapnet.save(model, tmp_path / "m.pt")
        loaded = shapnet.load(tmp_path / "m.pt")
        assert type(loaded) is type(model)
        torch.testing.assert_close(loaded.explain(x).values, model.explain(x).values)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"hidden": ()}, "hidden"), ({"child_ratio": 0.0}, "child_ratio"), ({"gamma": -1.0}, "gamma")],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HarsanyiNet(4, 2, **kwargs)


def test_trains_with_the_training_loop() -> None:
    from shapnet.training import evaluate, fit

    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 4)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)  # an interaction the AND units can represent
    torch.manual_seed(0)
    model = HarsanyiNet(4, 2, hidden=(32, 32), child_ratio=0.5)
    fit(model, X, y, epochs=40, batch_size=64, lr=1e-2)
    assert evaluate(model, X, y) > 0.8


@pytest.mark.parametrize("make", [lambda: HarsanyiNet(6, 2, hidden=(5, 4)), lambda: VisionHarsanyiNet(1, 2, image_size=4)])
def test_cached_receptive_fields_follow_every_change_of_the_children(make) -> None:
    """The fields are cached between explanations; an in-place change of ``tau`` (an optimiser step, loading
    weights) must refresh them, so values stay exact."""
    torch.manual_seed(0)
    model = make().double()
    x = torch.randn(3, *model.input_shape, dtype=torch.float64)
    with torch.no_grad():
        model.explain(x)  # fills the cache
        for tau in model.tau:
            tau.neg_()  # every unit now chooses the other children
        fresh = make().double()
        fresh.load_state_dict(model.state_dict())
        torch.testing.assert_close(model.explain(x).values, fresh.explain(x).values)
    assert all(torch.equal(a, b) for a, b in zip(model.receptive_fields(), fresh.receptive_fields()))
