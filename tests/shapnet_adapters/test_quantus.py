"""explain_func and TabularAsImage against model.explain, and inside real Quantus metrics (tiny sizes)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import quantus
import torch

from shapnet_adapters import TabularAsImage, explain_func
from shapnet_adapters.quantus import auc

B = 4


def labels(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1).numpy()


def own_values(model, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        per_element = model.explain(torch.from_numpy(x)).per_element().numpy()  # (B, *in, K)
    return np.stack([per_element[b, ..., k] for b, k in enumerate(targets)])


def test_values_equal_model_explain(model) -> None:
    x = np.random.default_rng(0).normal(size=(B, *model.input_shape)).astype(np.float32)
    targets = np.array([0, 2, 1, 2])
    a = explain_func(model=model, inputs=x, targets=targets)
    assert type(a) is np.ndarray and a.shape == x.shape
    np.testing.assert_allclose(a, own_values(model, x, targets), rtol=1e-6, atol=1e-7)
    # One int target for every row, and float64 inputs (cast to the model's dtype).
    np.testing.assert_allclose(
        explain_func(model=model, inputs=x.astype(np.float64), targets=1),
        own_values(model, x, np.ones(B, dtype=int)),
        rtol=1e-6,
        atol=1e-7,
    )


def test_tabular_as_image(shallow) -> None:
    x = np.random.default_rng(1).normal(size=(B, 5)).astype(np.float32)
    wrapped = TabularAsImage(shallow)
    assert wrapped.input_shape == (1, 5)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(torch.from_numpy(x[:, None])), shallow(torch.from_numpy(x)))
    targets = labels(shallow, x)
    a = explain_func(model=wrapped, inputs=x[:, None], targets=targets)
    assert a.shape == (B, 1, 5)
    np.testing.assert_allclose(a[:, 0], own_values(shallow, x, targets), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"\(B, 1, 5\)"):
        wrapped(torch.from_numpy(x))
    with pytest.raises(ValueError, match=r"\(B, 1, 5\)"):
        explain_func(model=wrapped, inputs=x, targets=targets)
    with pytest.raises(TypeError, match="tabular ShapNet"):
        TabularAsImage(torch.nn.Linear(5, 3))


def test_uses_the_model_it_is_given(shallow) -> None:
    """Randomisation metrics pass randomised copies: explain_func must explain the copy, not a closure."""
    x = np.random.default_rng(2).normal(size=(B, 5)).astype(np.float32)
    targets = np.zeros(B, dtype=int)
    scrambled = copy.deepcopy(shallow)
    with torch.no_grad():
        for parameter in scrambled.parameters():
            parameter.normal_()
    original = explain_func(model=shallow, inputs=x, targets=targets)
    changed = explain_func(model=scrambled, inputs=x, targets=targets)
    assert not np.allclose(original, changed)
    np.testing.assert_allclose(changed, own_values(scrambled, x, targets), rtol=1e-6, atol=1e-7)
    # Quantus' own wrapper (what metrics build from a torch module) is unwrapped too.
    wrapper = quantus.PyTorchModel(TabularAsImage(scrambled), channel_first=True, softmax=False)
    np.testing.assert_allclose(explain_func(model=wrapper, inputs=x[:, None], targets=targets)[:, 0], changed)


def test_targets_and_errors(make_model) -> None:
    model = make_model("shallow")
    x = np.zeros((B, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="targets=None is ambiguous"):
        explain_func(model=model, inputs=x, targets=None)
    with pytest.raises(ValueError, match=r"must lie in \[-3, 2\]"):
        explain_func(model=model, inputs=x, targets=np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="one index per row"):
        explain_func(model=model, inputs=x, targets=np.array([0, 1]))
    with pytest.raises(TypeError, match="needs a ShapNet"):
        explain_func(model=torch.nn.Linear(5, 3), inputs=x, targets=0)
    single = make_model("shallow", n_outputs=1)
    assert explain_func(model=single, inputs=x + 1, targets=None).shape == (B, 5)


def test_baseline_and_device_kwargs(shallow) -> None:
    x = np.random.default_rng(3).normal(size=(B, 5)).astype(np.float32)
    baseline = torch.full((5,), 0.7)
    a = explain_func(model=shallow, inputs=x, targets=1, baseline=baseline, device="cpu")
    with torch.no_grad():
        ex = shallow.explain(torch.from_numpy(x), baseline=baseline)
    np.testing.assert_allclose(a, ex.values[..., 1].numpy(), rtol=1e-6, atol=1e-7)


def test_auc_matches_the_trapezoidal_rule() -> None:
    curves = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(auc(curves), [2.0, 2.0])
    assert auc(curves[0], dx=0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\(T,\) or \(B, T\)"):
        auc(np.zeros((1, 2, 3)))


@pytest.fixture
def tabular(shallow):
    """A tabular ShapNet as a 1 x F image, and matching data: Quantus' tabular recipe."""
    x = np.random.default_rng(4).normal(size=(B, 1, 5)).astype(np.float32)
    wrapped = TabularAsImage(shallow)
    return wrapped, x, labels(wrapped, x)


def run(metric, model, x, y) -> list:
    return metric(
        model=model, x_batch=x, y_batch=y, a_batch=None, explain_func=explain_func, softmax=False,
        channel_first=True,
    )


def test_faithfulness_correlation(tabular) -> None:
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=5, subset_size=2, perturb_baseline="mean", abs=False, normalise=False, return_aggregate=False,
        disable_warnings=True,
    )
    scores = run(metric, *tabular)
    assert len(scores) == B and np.all(np.isfinite(scores)) and np.all(np.abs(scores) <= 1 + 1e-9)


def test_monotonicity_correlation(tabular) -> None:
    metric = quantus.MonotonicityCorrelation(
        nr_samples=2, features_in_step=1, perturb_baseline="mean", abs=False, normalise=False,
        disable_warnings=True,
    )
    scores = run(metric, *tabular)
    assert len(scores) == B and np.all(np.isfinite(scores))


def test_pixel_flipping_with_auc_outside_quantus(tabular) -> None:
    metric = quantus.PixelFlipping(
        features_in_step=1, perturb_baseline="mean", abs=False, normalise=False, disable_warnings=True,
        return_auc_per_sample=False,  # True would call np.trapz, removed in numpy 2.4
    )
    curves = np.asarray(run(metric, *tabular))
    assert curves.shape == (B, 5) and np.all(np.isfinite(curves))
    areas = auc(curves)
    assert areas.shape == (B,) and np.all(np.isfinite(areas))


def test_road_on_images(vision) -> None:
    x = np.random.default_rng(5).normal(size=(B, 1, 8, 8)).astype(np.float32)
    metric = quantus.ROAD(percentages=[10, 50, 90], noise=0.01, abs=False, normalise=False, disable_warnings=True)
    curve = run(metric, vision, x, labels(vision, x))
    assert sorted(curve) == [10, 50, 90]
    assert all(0.0 <= value <= 1.0 for value in curve.values())
