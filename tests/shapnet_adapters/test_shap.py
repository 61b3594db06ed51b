"""ShapNetExplainer against model.explain, input types, the legacy API, plots and shap.benchmark."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import shap
import shap.benchmark  # not imported by `import shap`
import torch

from shapnet_adapters import ShapNetExplainer

B = 6


def own_values(model, x: torch.Tensor):
    with torch.no_grad():
        ex = model.explain(x)
    return ex.per_element().detach().numpy(), ex.base_values.detach().numpy()


def assert_png_not_blank(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 0
    pixels = plt.imread(path)  # (H, W, 4) floats in [0, 1]
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    assert len(colours) > 1, f"{path.name} is blank"


def test_is_a_shap_explainer_and_keeps_its_class(shallow) -> None:
    explainer = ShapNetExplainer(shallow)
    assert type(explainer) is ShapNetExplainer  # the base class did not rebind __class__
    assert isinstance(explainer, shap.Explainer)
    assert explainer.shapnet is shallow
    assert isinstance(explainer.model, shap.models.Model)
    assert isinstance(explainer.masker, shap.maskers.Independent)
    np.testing.assert_array_equal(explainer.masker.data, shallow.reference.numpy()[None])


def test_values_equal_model_explain(model) -> None:
    x = torch.randn(B, *model.input_shape)
    ex = ShapNetExplainer(model, output_names=["a", "b", "c"])(x.numpy())
    values, base = own_values(model, x)
    assert isinstance(ex, shap.Explanation)
    assert ex.values.shape == (B, *model.input_shape, 3)
    np.testing.assert_allclose(ex.values, values, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ex.base_values, base, rtol=1e-6)
    np.testing.assert_array_equal(ex.data, x.numpy())
    assert list(ex.output_names) == ["a", "b", "c"]
    assert ex.compute_time is not None and ex.compute_time >= 0
    # Local accuracy as shap sees it: base + sum(values) = model output.
    total = ex.base_values + ex.values.reshape(B, -1, 3).sum(1)
    np.testing.assert_allclose(total, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_numpy_torch_and_pandas_inputs_agree(shallow) -> None:
    x = np.random.default_rng(0).normal(size=(B, 5))  # float64: cast to the model's float32
    explainer = ShapNetExplainer(shallow)
    from_numpy = explainer(x)
    from_torch = explainer(torch.from_numpy(x))
    frame = pd.DataFrame(x, columns=["age", "bmi", "bp", "s1", "s2"])
    from_pandas = explainer(frame)
    np.testing.assert_array_equal(from_numpy.values, from_torch.values)
    np.testing.assert_array_equal(from_numpy.values, from_pandas.values)
    assert list(from_pandas.feature_names) == ["age", "bmi", "bp", "s1", "s2"]
    assert from_numpy.feature_names == [f"Feature {i}" for i in range(5)]  # shap's default names
    named = ShapNetExplainer(shallow, feature_names=list("vwxyz"))(x)
    assert list(named.feature_names) == list("vwxyz")


def test_legacy_api(make_model) -> None:
    model = make_model("deep")
    x = torch.randn(B, 5)
    explainer = ShapNetExplainer(model)
    values, base = own_values(model, x)
    np.testing.assert_allclose(explainer.shap_values(x), values, rtol=1e-6, atol=1e-7)
    expected = explainer.expected_value
    assert isinstance(expected, np.ndarray) and expected.shape == (3,)
    np.testing.assert_allclose(expected, base[0], rtol=1e-6)
    single = make_model("shallow", n_outputs=1)
    expected_single = ShapNetExplainer(single).expected_value
    assert isinstance(expected_single, float)
    with torch.no_grad():
        assert expected_single == pytest.approx(float(single(single.reference.unsqueeze(0))[0, 0]), rel=1e-5)


def test_image_explanation_is_channel_last(vision, shallow) -> None:
    x = torch.randn(2, *vision.input_shape)
    explainer = ShapNetExplainer(vision)
    ex = explainer.image_explanation(x)
    assert ex.values.shape == (2, 8, 8, 1, 3) and ex.data.shape == (2, 8, 8, 1)
    with torch.no_grad():
        per_pixel = vision.explain(x).values.numpy()  # (B, H, W, K)
    np.testing.assert_allclose(ex.values.sum(3), per_pixel, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ex.data[..., 0], x[:, 0].numpy())
    with pytest.raises(ValueError, match="image model"):
        ShapNetExplainer(shallow).image_explanation(np.zeros((1, 5), dtype=np.float32))


@pytest.mark.parametrize("plot", ["waterfall", "beeswarm", "bar", "heatmap", "image"])
def test_plots_render(plot, make_model, tmp_path) -> None:
    if plot == "image":
        model = make_model("vision")
        ex = ShapNetExplainer(model).image_explanation(torch.randn(2, *model.input_shape))
        shap.plots.image(ex, show=False)
    else:
        model = make_model("shallow")
        frame = pd.DataFrame(np.random.default_rng(0).normal(size=(12, 5)), columns=list("abcde"))
        ex = ShapNetExplainer(model, output_names=["x", "y", "z"])(frame)
        if plot == "waterfall":
            shap.plots.waterfall(ex[0, :, 1], show=False)
        elif plot == "beeswarm":
            shap.plots.beeswarm(ex[:, :, 1], show=False)
        elif plot == "bar":
            shap.plots.bar(ex[:, :, 1], show=False)
        else:
            shap.plots.heatmap(ex[:, :, 1], show=False)
    path = tmp_path / f"{plot}.png"
    plt.savefig(path, bbox_inches="tight")
    plt.close("all")
    assert_png_not_blank(path)


def test_model_output(shallow) -> None:
    explainer = ShapNetExplainer(shallow, output_names=["a", "b", "c"])
    x = np.random.default_rng(1).normal(size=(B, 5))  # float64, as shap's maskers produce
    out = explainer.model_output("c")(x)
    assert out.shape == (B,) and out.dtype == np.float64
    with torch.no_grad():
        np.testing.assert_allclose(out, shallow(torch.from_numpy(x).float())[:, 2].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(explainer.model_output(-1)(x), out)
    with pytest.raises(ValueError, match="output_names"):
        explainer.model_output("d")
    with pytest.raises(ValueError, match="must lie in"):
        explainer.model_output(3)


def test_explanation_error_matches_shap_exact(shallow) -> None:
    """With the reference as background, shap's Exact explainer plays the ShapNet's game, so a Shallow
    ShapNet's (exact) values match it and the benchmark scores both the same."""
    explainer = ShapNetExplainer(shallow)
    x = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
    ours = explainer(x)[:, :, 1]
    predict = explainer.model_output(1)
    theirs = shap.explainers.Exact(predict, explainer.masker)(x)
    np.testing.assert_allclose(ours.values, theirs.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.base_values, theirs.base_values, rtol=1e-5)
    benchmark = shap.benchmark.ExplanationError(explainer.masker, predict, x, num_permutations=3)
    ours_error = benchmark(ours, "shapnet", silent=True).value
    exact_error = benchmark(theirs, "exact", silent=True).value
    assert np.isfinite(ours_error) and ours_error == pytest.approx(exact_error, rel=1e-3, abs=1e-6)
    # A worse explanation scores worse: the benchmark can tell explanations apart.
    shuffled = ours.values[:, ::-1].copy()
    assert benchmark(shuffled, "shuffled", silent=True).value > ours_error


def test_explanation_error_deep(make_model) -> None:
    model = make_model("deep")
    explainer = ShapNetExplainer(model)
    x = np.random.default_rng(3).normal(size=(3, 5)).astype(np.float32)
    benchmark = shap.benchmark.ExplanationError(explainer.masker, explainer.model_output(0), x, num_permutations=2)
    assert np.isfinite(benchmark(explainer(x)[:, :, 0], "deep", silent=True).value)


def test_sequential_masker(shallow) -> None:
    explainer = ShapNetExplainer(shallow)
    x = np.random.default_rng(4).normal(size=(4, 5)).astype(np.float32)
    predict = explainer.model_output(0)
    masker = shap.benchmark.SequentialMasker("remove", "positive", explainer.masker, predict, x)
    result = masker(explainer(x)[:, :, 0], "shapnet", silent=True)
    assert np.all(np.isfinite(result.curve_y)) and np.isfinite(result.value)
    # Removing nothing gives the prediction; "positive" order removes (sets to the reference) exactly the
    # features with a positive value, so the curve ends at the mean prediction with those at the reference.
    np.testing.assert_allclose(result.curve_y[0], predict(x).mean(), rtol=1e-5)
    values = explainer(x)[:, :, 0].values
    reference = shallow.reference.numpy()
    np.testing.assert_allclose(result.curve_y[-1], predict(np.where(values > 0, reference, x)).mean(), rtol=1e-5)
    # "absolute" order removes every feature: the curve ends at the prediction at the reference.
    every = shap.benchmark.SequentialMasker("remove", "absolute", explainer.masker, predict, x)
    ends = every(explainer(x)[:, :, 0], "shapnet", silent=True).curve_y
    np.testing.assert_allclose(ends[-1], predict(reference[None, :])[0], rtol=1e-5, atol=1e-6)


def test_bad_arguments(shallow) -> None:
    with pytest.raises(TypeError, match="needs a ShapNet"):
        ShapNetExplainer(torch.nn.Linear(5, 3))
    with pytest.raises(ValueError, match="feature_names must have 5"):
        ShapNetExplainer(shallow, feature_names=["a"])
    with pytest.raises(ValueError, match="output_names must have 3"):
        ShapNetExplainer(shallow, output_names=["a"])
    with pytest.raises(TypeError, match="real numbers"):
        ShapNetExplainer(shallow)(np.array([["a"] * 5]))
    with pytest.raises(ValueError, match="wrong number of features"):  # the core's input check
        ShapNetExplainer(shallow)(np.zeros((2, 4), dtype=np.float32))
