"""ShapNetExplainer held to shap's own test helpers and plot tests (issue #13).

``additivity`` and ``serialization`` follow shap's ``tests/explainers/common.py`` (``test_additivity``,
``test_serialization``): they build the explainer as ``explainer_type(model, masker, **kwargs)``, call it with
shap's keywords and round-trip it through ``save``/``load``. The plot tests follow shap's ``tests/plots``: they
pass the explanation of a single-output model to each plot without slicing.
"""

from __future__ import annotations

import tempfile

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import shap
import torch

from shapnet import DeepShapNet, ShallowShapNet, Stage, VisionShapNet
from shapnet_adapters import ShapNetExplainer
from shapnet_adapters.shap import ShapNetModel

COLUMNS = ["Age", "Workclass", "Education-Num", "Hours per week", "Capital Gain"]


def additivity(explainer_type, model, masker, data, **kwargs) -> shap.Explanation:
    """shap's ``test_additivity``, with its comparison made strict (shap's puts ``< 1e6`` inside ``abs``)."""
    explainer = explainer_type(model, masker, **kwargs)
    ex = explainer(data)
    out = explainer.model(data)  # the numpy-callable model, as shap's helper calls it
    total = ex.base_values + ex.values.reshape(len(data), -1, *ex.values.shape[len(data.shape) :]).sum(1)
    np.testing.assert_allclose(total, out, rtol=1e-5, atol=1e-5)
    return ex


def serialization(explainer_type, model, masker, data, **kwargs) -> shap.Explanation:
    """shap's ``test_serialization``: save, load with ``explainer_type.load``, explain again with max_evals."""
    explainer = explainer_type(model, masker, **{k: v for k, v in kwargs.items() if k == "algorithm"})
    original = explainer(data[:1])
    with tempfile.TemporaryFile() as stream:
        explainer.save(stream)
        stream.seek(0)
        loaded = explainer_type.load(stream)
    new = loaded(data[:1], **{k: v for k, v in kwargs.items() if k == "max_evals"})
    np.testing.assert_allclose(original.base_values, new.base_values, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(original[0].values, new[0].values, rtol=1e-5, atol=1e-8)
    assert isinstance(explainer, type(loaded)) and isinstance(explainer.masker, type(loaded.masker))
    return new


def tabular(kind: str, n_outputs: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "shallow":
        return ShallowShapNet(5, n_outputs, hidden=(8,), reference=torch.linspace(-0.5, 0.5, 5)).eval()
    return DeepShapNet(5, n_outputs, channels=4, hidden=(8,), reference=torch.full((5,), 0.25)).eval()


DATA = np.random.default_rng(0).normal(size=(12, 5))  # float64, as shap's tests use


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_shap_common_helpers_with_model_and_masker(kind: str, n_outputs: int) -> None:
    model = tabular(kind, n_outputs)
    reference = model.reference.numpy()[None]
    ex = additivity(
        ShapNetExplainer, model, reference, DATA, algorithm="exact", link=shap.links.identity, seed=0
    )
    assert ex.values.shape == ((12, 5) if n_outputs == 1 else (12, 5, 3))
    additivity(ShapNetExplainer, model, shap.maskers.Independent(reference), DATA)
    additivity(ShapNetExplainer, model, None, DATA, algorithm="permutation")
    serialization(ShapNetExplainer, model, reference, DATA, algorithm="exact", max_evals=100)
    serialization(ShapNetExplainer, model, None, DATA)


def test_shallow_with_background_matches_shaps_exact_explainer() -> None:
    """Background data in the masker: the Shallow ShapNet's values average over it exactly, the game shap's
    Exact explainer plays with the same masker."""
    model = tabular("shallow", 3)
    background = np.random.default_rng(1).normal(size=(6, 5))
    explainer = ShapNetExplainer(model, background)
    assert isinstance(explainer.masker, shap.maskers.Independent)
    ours = additivity(ShapNetExplainer, model, background, DATA[:3])
    theirs = shap.explainers.Exact(explainer.model, shap.maskers.Independent(background))(DATA[:3])
    assert theirs.values.shape == ours.values.shape == (3, 5, 3)
    np.testing.assert_allclose(ours.values, theirs.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.base_values, theirs.base_values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(explainer.expected_value, theirs.base_values[0], rtol=1e-5, atol=1e-6)
    frame = pd.DataFrame(background, columns=COLUMNS)  # a DataFrame masker works the same
    np.testing.assert_allclose(ShapNetExplainer(model, frame)(DATA[:3]).values, ours.values, rtol=1e-6)


def test_deep_models_refuse_a_background_other_than_the_reference() -> None:
    model = tabular("deep", 2)
    with pytest.raises(ValueError, match="explains against its own reference"):
        ShapNetExplainer(model, DATA)
    near = model.reference.numpy()[None].astype(np.float64) + 1e-9  # the reference up to rounding is fine
    ShapNetExplainer(model, near)(DATA[:2])


def test_names_survive_save_and_shap_explainer_load() -> None:
    model = tabular("shallow", 3)
    explainer = ShapNetExplainer(
        model, feature_names=COLUMNS, output_names=["low", "mid", "high"], algorithm="exact"
    )
    with tempfile.TemporaryFile() as stream:
        explainer.save(stream)
        stream.seek(0)
        loaded = shap.Explainer.load(stream)  # shap's own entry point dispatches on the saved class
    assert type(loaded) is ShapNetExplainer and loaded.algorithm == "exact"
    assert loaded.feature_names == COLUMNS and loaded.output_names == ["low", "mid", "high"]
    ex = loaded(DATA[:2])
    assert list(ex.feature_names) == COLUMNS and list(ex.output_names) == ["low", "mid", "high"]
    np.testing.assert_allclose(ex.values, explainer(DATA[:2]).values)
    for name, parameter in model.state_dict().items():
        torch.testing.assert_close(loaded.shapnet.state_dict()[name], parameter)


def test_model_is_callable_on_numpy_and_plugs_into_shaps_explainers() -> None:
    model = tabular("deep", 3)
    explainer = ShapNetExplainer(model)
    out = explainer.model(DATA)
    assert isinstance(out, np.ndarray) and out.shape == (12, 3) and out.dtype == np.float64
    with torch.no_grad():
        np.testing.assert_allclose(out, model(torch.from_numpy(DATA).float()).numpy(), rtol=1e-6)
    assert explainer.model(pd.DataFrame(DATA)).shape == (12, 3)
    assert ShapNetExplainer(tabular("deep", 1)).model(DATA).shape == (12,)  # a single output is (N,)
    # shap's explainers unwrap a shap.models.Model to its inner_model: that is the numpy function too.
    permutation = shap.explainers.Permutation(explainer.model, explainer.masker)(DATA[:2], max_evals=30)
    assert permutation.values.shape == (2, 5, 3)
    assert isinstance(explainer.model, ShapNetModel) and explainer.model.shapnet is model
    assert ShapNetExplainer(torch.nn.DataParallel(model)).shapnet is model  # parallel wrappers are unwrapped


def test_call_keywords_are_accepted_and_never_change_the_values() -> None:
    model = tabular("shallow", 3)
    explainer = ShapNetExplainer(
        model,
        model.reference.numpy()[None],
        link=shap.links.identity,
        algorithm="auto",
        seed=3,
        linearize_link=False,
    )
    plain = explainer(DATA)
    ex = explainer(DATA, max_evals=50, batch_size=5, silent=True, main_effects=False, error_bounds=False)
    np.testing.assert_allclose(ex.values, plain.values, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ex.base_values, plain.base_values, rtol=1e-6)
    np.testing.assert_allclose(
        explainer.shap_values(DATA, nsamples=100, silent=True), plain.values, rtol=1e-6
    )
    for bad in ({"max_evals": 0}, {"batch_size": -1}, {"max_evals": "many"}):
        with pytest.raises(ValueError, match="'auto' or a positive int"):
            explainer(DATA, **bad)
    with pytest.raises(TypeError, match="one argument"):
        explainer(DATA, DATA)


def test_main_effects_and_error_bounds() -> None:
    model = tabular("shallow", 3)
    background = np.random.default_rng(2).normal(size=(4, 5))
    ex = ShapNetExplainer(model, background)(DATA[:3], main_effects=True, error_bounds=True)
    assert ex.main_effects.shape == ex.values.shape == (3, 5, 3)
    np.testing.assert_array_equal(ex.error_std, np.zeros_like(ex.values))
    # Main effect of feature i: f(x_i, background_rest) - f(background), averaged over the background rows.
    predict = ShapNetExplainer(model).model
    for i in range(5):
        mixed = np.repeat(background[None], 3, 0)  # (3, G, F)
        mixed[:, :, i] = DATA[:3, i, None]
        want = (predict(mixed.reshape(-1, 5)).reshape(3, 4, 3) - predict(background)[None]).mean(1)
        np.testing.assert_allclose(ex.main_effects[:, i], want, rtol=1e-5, atol=1e-6)
    # A GAM's main effects are its Shapley values (no interactions).
    gam = ShallowShapNet(5, 1, groups="gam", hidden=(8,)).eval()
    gam_ex = ShapNetExplainer(gam)(DATA[:3], main_effects=True)
    np.testing.assert_allclose(gam_ex.main_effects, gam_ex.values, rtol=1e-5, atol=1e-6)


def test_outputs_selects_outputs_like_shaps_partition_explainer() -> None:
    model = tabular("deep", 3)
    explainer = ShapNetExplainer(model, output_names=["a", "b", "c"])
    full = explainer(DATA[:4])
    top = explainer(DATA[:4], outputs=shap.Explanation.argsort.flip[:1])  # each row's largest output
    order = np.argsort(-explainer.model(DATA[:4]), axis=1)[:, :1]
    assert top.values.shape == (4, 5, 1)
    np.testing.assert_allclose(top.values[..., 0], full.values[np.arange(4), :, order[:, 0]])
    np.testing.assert_allclose(top.base_values[:, 0], full.base_values[np.arange(4), order[:, 0]])
    two = explainer(DATA[:4], outputs=[2, 0])
    assert list(two.output_names) == ["c", "a"]
    np.testing.assert_allclose(two.values, full.values[..., [2, 0]])
    with pytest.raises(ValueError, match="must lie in"):
        explainer(DATA[:4], outputs=[3])


def test_binary_classifiers_follow_shaps_own_explainers() -> None:
    """shap's Exact explainer on a 2-output function (predict_proba) gives (B, F, 2); on a one-output function
    (a log-odds) it gives (B, F). A ShapNet with 2 outputs does the first; log_odds=True the second."""
    model = tabular("shallow", 2)
    two = ShapNetExplainer(model)
    single = ShapNetExplainer(model, log_odds=True)
    their_two = shap.explainers.Exact(two.model, two.masker)(DATA[:3])
    their_single = shap.explainers.Exact(single.model, single.masker)(DATA[:3])
    ours_two, ours_single = two(DATA[:3]), single(DATA[:3])
    assert ours_two.values.shape == their_two.values.shape == (3, 5, 2)
    assert ours_single.values.shape == their_single.values.shape == (3, 5)
    assert ours_single.base_values.shape == their_single.base_values.shape == (3,)
    np.testing.assert_allclose(ours_single.values, their_single.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        ours_single.values, ours_two.values[..., 1] - ours_two.values[..., 0], rtol=1e-5
    )
    with pytest.raises(ValueError, match="2 outputs"):
        ShapNetExplainer(tabular("shallow", 3), log_odds=True)


def test_construction_errors_name_the_fix() -> None:
    model = tabular("shallow", 3)
    with pytest.raises(ValueError, match="only link=shap.links.identity"):
        ShapNetExplainer(model, link=shap.links.logit)
    with pytest.raises(ValueError, match="Owen values"):
        ShapNetExplainer(model, algorithm="partition")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        ShapNetExplainer(model, algorithm="magic")
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        ShapNetExplainer(model, nsamples=10)
    with pytest.raises(TypeError, match="masker must be None, background data"):
        ShapNetExplainer(model, shap.maskers.Partition(DATA))
    with pytest.raises(ValueError, match=r"shape \(G, 5\)"):
        ShapNetExplainer(model, np.zeros((3, 4)))


# --------------------------------------------------------------------------- #
# shap's plot tests, on a single-output explainer, without slicing
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def explanation() -> tuple[ShapNetExplainer, pd.DataFrame, shap.Explanation]:
    model = tabular("shallow", 1)
    X = pd.DataFrame(np.random.default_rng(3).normal(size=(40, 5)), columns=COLUMNS)
    explainer = ShapNetExplainer(model)
    return explainer, X, explainer(X)


PLOTS = {
    "bar": lambda e, X, ex: shap.plots.bar(ex, show=False),
    "bar_local": lambda e, X, ex: shap.plots.bar(ex[0], show=False),
    "bar_clustering": lambda e, X, ex: shap.plots.bar(
        ex, clustering=shap.utils.hclust(X, metric="cosine"), show=False
    ),
    "beeswarm": lambda e, X, ex: shap.plots.beeswarm(ex, show=False),
    "waterfall": lambda e, X, ex: shap.plots.waterfall(ex[0], show=False),
    "summary_legacy": lambda e, X, ex: shap.summary_plot(e.shap_values(X), X, show=False),
    "heatmap": lambda e, X, ex: shap.plots.heatmap(ex, show=False),
    "heatmap_order": lambda e, X, ex: shap.plots.heatmap(ex, instance_order=ex.sum(1), show=False),
    "scatter": lambda e, X, ex: shap.plots.scatter(ex[:, "Age"], show=False),
    "scatter_colour": lambda e, X, ex: shap.plots.scatter(ex[:, "Age"], color=ex[:, "Workclass"], show=False),
    "scatter_dotchain": lambda e, X, ex: shap.plots.scatter(ex[:, ex.abs.mean(0).argsort[-2]], show=False),
    "violin": lambda e, X, ex: shap.plots.violin(e.shap_values(X), features=X, show=False),
    "violin_layered": lambda e, X, ex: shap.plots.violin(ex, plot_type="layered_violin", show=False),
    "decision": lambda e, X, ex: shap.plots.decision(e.expected_value, e.shap_values(X), X, show=False),
}


@pytest.mark.parametrize("plot", sorted(PLOTS))
def test_shap_plots_take_a_single_output_explanation_unsliced(plot: str, explanation, tmp_path) -> None:
    explainer, X, ex = explanation
    assert ex.values.shape == (40, 5) and ex.base_values.shape == (40,) and ex.output_names is None
    PLOTS[plot](explainer, X, ex)
    path = tmp_path / f"{plot}.png"
    plt.savefig(path, bbox_inches="tight")
    plt.close("all")
    colours = np.unique(plt.imread(path).reshape(-1, 4), axis=0)
    assert len(colours) > 1, f"{plot} is blank"


def test_image_plot_with_one_output_kept() -> None:
    model = VisionShapNet(1, 3, stages=[Stage(4, hidden=(8,))], image_size=(8, 8), readout_hidden=(8,)).eval()
    explainer = ShapNetExplainer(model)
    ex = explainer.image_explanation(torch.randn(2, 1, 8, 8))
    shap.plots.image(ex[..., 1:2], show=False)  # the docstring's advice: keep the output axis
    plt.close("all")
    picked = explainer.image_explanation(torch.randn(2, 1, 8, 8), outputs=[1])
    assert picked.values.shape == (2, 8, 8, 1, 1)
    shap.plots.image(picked, show=False)
    plt.close("all")
