"""Every Quantus 0.6 metric that runs with a random explain_func on a ShapNet also runs with explain_func
(issue #13); the ones that cannot run fail the same way for any explanation (docs/ecosystem/quantus.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import quantus
import torch
from torch import nn

from shapnet import DeepShapNet, ShallowShapNet, Stage, VisionShapNet
from shapnet_adapters.quantus import Completeness, QuantusModel, TabularAsImage, explain_func

B = 3
QUIET = {"disable_warnings": True, "display_progressbar": False}


def random_explain(model, inputs, targets, **kwargs) -> np.ndarray:
    return np.random.default_rng(0).normal(size=inputs.shape).astype(np.float32)


def setup(kind: str) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    if kind == "tabular":
        model = QuantusModel(DeepShapNet(6, 3, channels=4, hidden=(8,)).eval())
        x = np.random.default_rng(1).normal(size=(B, 1, 6)).astype(np.float32)
    else:
        model = QuantusModel(
            VisionShapNet(
                1,
                3,
                stages=[Stage(4, hidden=(8,)), Stage(4, dilation=2, hidden=(8,))],
                image_size=(8, 8),
                readout_hidden=(8,),
            ).eval()
        )
        x = np.random.default_rng(2).normal(size=(B, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    return model, x, y


def run(metric, model, x, y, explain=explain_func, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(
            model=model,
            x_batch=x,
            y_batch=y,
            a_batch=None,
            explain_func=explain,
            softmax=False,
            channel_first=True,
            **kwargs,
        )


METRICS = {
    "AvgSensitivity": lambda: quantus.AvgSensitivity(nr_samples=2, **QUIET),
    "MaxSensitivity": lambda: quantus.MaxSensitivity(nr_samples=2, **QUIET),
    "Continuity": lambda: quantus.Continuity(nr_steps=2, **QUIET),
    "LocalLipschitzEstimate": lambda: quantus.LocalLipschitzEstimate(nr_samples=2, **QUIET),
    "Consistency": lambda: quantus.Consistency(**QUIET),
    "RelativeInputStability": lambda: quantus.RelativeInputStability(nr_samples=2, **QUIET),
    "RelativeOutputStability": lambda: quantus.RelativeOutputStability(nr_samples=2, **QUIET),
    "RelativeRepresentationStability": lambda: quantus.RelativeRepresentationStability(nr_samples=2, **QUIET),
    "FaithfulnessCorrelation": lambda: quantus.FaithfulnessCorrelation(nr_runs=2, subset_size=2, **QUIET),
    "FaithfulnessEstimate": lambda: quantus.FaithfulnessEstimate(features_in_step=2, **QUIET),
    "Monotonicity": lambda: quantus.Monotonicity(features_in_step=2, **QUIET),
    "MonotonicityCorrelation": lambda: quantus.MonotonicityCorrelation(
        nr_samples=2, features_in_step=2, **QUIET
    ),
    "PixelFlipping": lambda: quantus.PixelFlipping(features_in_step=2, **QUIET),
    "RegionPerturbation": lambda: quantus.RegionPerturbation(patch_size=2, regions_evaluation=2, **QUIET),
    "Selectivity": lambda: quantus.Selectivity(patch_size=2, **QUIET),
    "SensitivityN": lambda: quantus.SensitivityN(features_in_step=2, n_max_percentage=0.5, **QUIET),
    "Sufficiency": lambda: quantus.Sufficiency(**QUIET),
    "Sparseness": lambda: quantus.Sparseness(**QUIET),
    "Complexity": lambda: quantus.Complexity(**QUIET),
    "EffectiveComplexity": lambda: quantus.EffectiveComplexity(**QUIET),
    "NonSensitivity": lambda: quantus.NonSensitivity(**QUIET),
    "Completeness": lambda: quantus.Completeness(abs=False, normalise=False, perturb_baseline=0.0, **QUIET),
    "InputInvariance": lambda: quantus.InputInvariance(**QUIET),
    "MPRT": lambda: quantus.MPRT(**QUIET),
    "SmoothMPRT": lambda: quantus.SmoothMPRT(nr_samples=2, **QUIET),
    "EfficientMPRT": lambda: quantus.EfficientMPRT(abs=True, **QUIET),
    "Infidelity": lambda: quantus.Infidelity(n_perturb_samples=2, **QUIET),
    "ROAD": lambda: quantus.ROAD(percentages=[10, 50], **QUIET),
    "RandomLogit": lambda: quantus.RandomLogit(num_classes=3, **QUIET),
}

#: (metric, setup) pairs that no explanation can run in Quantus 0.6, with what Quantus raises.
QUANTUS_LIMITS = {
    ("EfficientMPRT", "tabular"): AssertionError,  # entropy of a non-image histogram: non-negative values
    ("EfficientMPRT", "image"): AssertionError,
    ("Infidelity", "tabular"): AssertionError,  # its padding assumes 2-D images
    ("ROAD", "tabular"): IndexError,  # noisy linear imputation needs 2-D images
    ("RandomLogit", "tabular"): ValueError,  # SSIM window larger than a 1 x F "image"
}


@pytest.mark.parametrize("kind", ["tabular", "image"])
@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_that_runs_with_a_random_explanation_runs_with_explain_func(name, kind) -> None:
    model, x, y = setup(kind)
    if (name, kind) in QUANTUS_LIMITS:
        for explain in (random_explain, explain_func):
            with pytest.raises(QUANTUS_LIMITS[(name, kind)]):
                run(METRICS[name](), model, x, y, explain)
        return
    # SmoothMPRT (Quantus 0.6) calls quantus.explain with explain_func_kwargs instead of explain_func, so a
    # method name there must be one of Quantus' own; it then never evaluates explain_func (see the docs).
    kwargs = {} if name == "SmoothMPRT" else {"explain_func_kwargs": {"method": "ShapNet"}}
    scores = run(METRICS[name](), model, x, y, explain_func, **kwargs)
    assert scores is not None and len(np.asarray(scores, dtype=object).reshape(-1)) >= 1


def test_relative_representation_stability_reads_every_layer(vision) -> None:
    """Quantus hooks every submodule; the Shapley layers now return tensors to their hooks."""
    wrapper = quantus.PyTorchModel(vision, channel_first=True, softmax=False)
    x = np.random.default_rng(3).normal(size=(2, 1, 8, 8)).astype(np.float32)
    hidden = wrapper.get_hidden_representations(x)
    with torch.no_grad():
        layers = vision.explain(torch.from_numpy(x), layers=True).layers
    assert hidden.shape[0] == 2 and hidden.shape[1] >= sum(layer[0].numel() for layer in layers[:1])
    assert np.all(np.isfinite(hidden))


def test_input_invariance_holds_for_the_shift_quantus_intends() -> None:
    """Quantus' InputInvariance rewrites the first layer's bias (the QuantusModel's InputShift) so that the
    shifted model sees the unshifted input: the ShapNet's values do not move. (Quantus 0.6 itself leaves one
    element per sample unshifted, so its score is False for every explanation; see the docs.)"""
    for model in (QuantusModel(ShallowShapNet(6, 3, hidden=(8,)).eval()), setup("image")[0]):
        x = np.random.default_rng(4).normal(size=(B, *model.input_shape)).astype(np.float32)
        y = np.array([0, 1, 2])
        shifted_model = quantus.PyTorchModel(
            model, channel_first=True, softmax=False
        ).add_mean_shift_to_first_layer(-1.0, (1, *model.input_shape))
        assert float(shifted_model.shift.bias.detach()[0]) == pytest.approx(1.0)
        a = explain_func(model=model, inputs=x, targets=y)
        shifted = explain_func(model=shifted_model, inputs=x - 1.0, targets=y)
        np.testing.assert_allclose(shifted, a, atol=1e-4)
        with torch.no_grad():
            torch.testing.assert_close(shifted_model(torch.from_numpy(x - 1.0)), model(torch.from_numpy(x)))


def test_completeness_with_a_tolerance() -> None:
    model = TabularAsImage(ShallowShapNet(6, 3, hidden=(8,)).eval())  # reference 0 = the perturb baseline
    x = np.random.default_rng(5).normal(size=(4, 1, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    settings = {"abs": False, "normalise": False, "perturb_baseline": 0.0, **QUIET}
    exact_equality = run(quantus.Completeness(**settings), model, x, y)
    tolerant = run(Completeness(**settings), model, x, y)
    assert all(tolerant) and not all(exact_equality)  # float rounding fails Quantus' ==
    with torch.no_grad():
        ex = model.model.explain(torch.from_numpy(x[:, 0]))
    assert float(ex.efficiency_error().abs().max()) < 1e-5
    shifted_baseline = run(Completeness(**{**settings, "perturb_baseline": 1.0}), model, x, y)
    assert not any(shifted_baseline)  # another baseline: the reference-0 values do not sum to that difference


def test_explain_func_takes_quantus_explain_keywords(shallow) -> None:
    x = np.random.default_rng(6).normal(size=(B, 5)).astype(np.float32)
    plain = explain_func(model=shallow, inputs=x, targets=1)
    for method in ("ShapNet", "shapnet", "Shapley", None):
        np.testing.assert_array_equal(explain_func(model=shallow, inputs=x, targets=1, method=method), plain)
    np.testing.assert_array_equal(
        explain_func(model=shallow, inputs=x, targets=1, softmax=False, channel_first=True), plain
    )
    with pytest.raises(ValueError, match="method='Saliency'.*quantus.explain"):
        explain_func(model=shallow, inputs=x, targets=1, method="Saliency")
    with pytest.raises(ValueError, match="softmax=True"):
        explain_func(model=shallow, inputs=x, targets=1, softmax=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        explain_func(model=shallow, inputs=x, targets=1, n_steps=10)
    images = np.random.default_rng(7).normal(size=(B, 2, 4, 4)).astype(np.float32)
    vision = VisionShapNet(2, 3, stages=[Stage(4, hidden=(8,))], image_size=4, readout_hidden=(8,)).eval()
    per_pixel = explain_func(model=vision, inputs=images, targets=0, reduce_axes=(1,))
    assert per_pixel.shape == (B, 1, 4, 4)
    with torch.no_grad():
        np.testing.assert_allclose(
            per_pixel[:, 0],
            vision.explain(torch.from_numpy(images)).values[..., 0].numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


def test_parallel_wrappers_are_unwrapped(shallow) -> None:
    x = np.random.default_rng(8).normal(size=(B, 5)).astype(np.float32)
    np.testing.assert_array_equal(
        explain_func(model=nn.DataParallel(shallow), inputs=x, targets=2),
        explain_func(model=shallow, inputs=x, targets=2),
    )
    wrapped = QuantusModel(nn.DataParallel(shallow))
    assert wrapped.model is shallow
