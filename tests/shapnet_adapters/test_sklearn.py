"""Tests for shapnet_adapters.sklearn: sklearn's estimator checks, explanations, options, determinism."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import shap
import torch
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_classifiers_train, check_regressors_train, parametrize_with_checks

from shapnet import DeepShapNet, HarsanyiNet, ShallowShapNet, exact_shapley
from shapnet_adapters.sklearn import EXPECTED_FAILED_CHECKS, ShapNetClassifier, ShapNetRegressor


#: A HarsanyiNet small enough for the checks' dozens of fits: one layer of 32 units, each choosing half of
#: the features as children (with one child per unit it learns too slowly for the training-score checks).
SMALL_HARSANYI = {"model": "harsanyi", "model_kwargs": {"hidden": (32,), "child_ratio": 0.5}}
#: Every configuration the docs describe (docs/ecosystem/sklearn.md): classifier and regressor; deep, shallow,
#: pruned deep and HarsanyiNet models.
CONFIGURATIONS = [{}, {"model": "shallow"}, {"prune": 0.5}, SMALL_HARSANYI]


def _check_epochs(estimator: type, config: dict) -> int:
    """Epochs for the checks: 3, except where check_classifiers_train / check_regressors_train need more
    (a shallow regressor: 30; a HarsanyiNet: 10, measured with random_state=0)."""
    if config is SMALL_HARSANYI:
        return 10
    return 30 if estimator is ShapNetRegressor and config == {"model": "shallow"} else 3


@parametrize_with_checks(
    [
        estimator(max_epochs=_check_epochs(estimator, config), random_state=0, **config)
        for estimator in (ShapNetClassifier, ShapNetRegressor)
        for config in CONFIGURATIONS
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
@pytest.mark.filterwarnings("ignore:early_stopping holds out")
def test_sklearn_estimator_checks(estimator, check) -> None:
    """All of sklearn's checks; few epochs, since only the training-score checks depend on training length
    (those run at the default settings below, too)."""
    check(estimator)


@pytest.mark.parametrize(
    ("estimator", "config"), [(ShapNetRegressor, {"model": "shallow"}), (ShapNetClassifier, {})],
    ids=["regressor-shallow", "classifier-deep"],
)
def test_sklearn_training_checks_pass_with_the_default_settings(estimator, config) -> None:
    """sklearn's checks that fit and score (accuracy > 0.83, R² > 0.5) with every default (epochs, early
    stopping) left as a user gets it: check_estimator(ShapNetRegressor(model="shallow")) used to fail here
    with patience 5 (R² 0.34). The other configurations pass every check above at max_epochs=3; each full
    default fit costs tens of seconds, so only these two run at full length."""
    instance = estimator(random_state=0, **config)
    check = check_classifiers_train if estimator is ShapNetClassifier else check_regressors_train
    check(estimator.__name__, instance)


def blobs(n: int = 120, f: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three standardised, well separated classes with string labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, f)) + 2.0 * np.eye(3, f)[y]
    X = (X - X.mean(0)) / X.std(0)
    return X, np.array(["setosa", "versicolor", "virginica"])[y]


def smooth_regression(n: int = 150, f: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    return X, X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 1] * X[:, 2]


# consistency=0: most tests are about the estimator's plumbing, not the (2x costlier) default regulariser.
FAST = {"max_epochs": 15, "lr": 1e-2, "early_stopping": False, "random_state": 0, "consistency": 0.0}


# --------------------------------------------------------------------------- #
# Fitting, predicting, explaining
# --------------------------------------------------------------------------- #
def test_classifier_on_wine_in_a_pipeline_with_dataframe_names() -> None:
    X, y = load_wine(return_X_y=True, as_frame=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0, stratify=y)
    scaler = StandardScaler().set_output(transform="pandas").fit(X_tr)
    clf = ShapNetClassifier(max_epochs=30, random_state=0).fit(scaler.transform(X_tr), y_tr)  # else defaults
    assert clf.score(scaler.transform(X_te), y_te) >= 0.93
    assert list(clf.classes_) == [0, 1, 2] and clf.n_features_in_ == 13
    assert isinstance(clf.model_, DeepShapNet) and clf.n_iter_ == len(clf.history_) <= 30
    assert {"train_loss", "valid_loss", "valid_acc"} <= set(clf.history_[-1])

    ex = clf.explain(scaler.transform(X_te))
    assert isinstance(ex, shap.Explanation)
    assert ex.values.shape == (len(X_te), 13, 3) and ex.base_values.shape == (len(X_te), 3)
    assert ex.feature_names == list(X.columns) and ex.output_names == ["0", "1", "2"]
    np.testing.assert_array_equal(ex.data, scaler.transform(X_te).to_numpy(np.float32))
    # Local accuracy: the values sum to the logits minus the logits at the reference.
    logits = ex.values.sum(1) + ex.base_values
    np.testing.assert_allclose(logits, clf.decision_function(scaler.transform(X_te)), atol=1e-4)
    pipe = make_pipeline(StandardScaler(), ShapNetClassifier(**FAST)).fit(X_tr, y_tr)
    np.testing.assert_array_equal(pipe.predict(X_te), pipe[-1].predict(pipe[:-1].transform(X_te)))


def test_classifier_string_labels_probabilities_and_binary_decision() -> None:
    X, y = blobs()
    clf = ShapNetClassifier(**FAST).fit(X, y)
    assert clf.score(X, y) > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(X))
    assert clf.explain(X[:5]).output_names == ["setosa", "versicolor", "virginica"]
    binary = ShapNetClassifier(**FAST).fit(X, y == "setosa")
    decision = binary.decision_function(X)
    assert decision.shape == (len(X),)
    # A binary classifier explains its log-odds, (B, F), as shap's Linear and Tree explainers do for one.
    ex = binary.explain(X)
    assert ex.values.shape == (len(X), 4) and ex.base_values.shape == (len(X),) and ex.output_names is None
    np.testing.assert_allclose(ex.values.sum(1) + ex.base_values, decision, atol=1e-4)
    logits = binary.model_(torch.from_numpy(X).float()).detach().numpy()
    np.testing.assert_allclose(decision, logits[:, 1] - logits[:, 0], atol=1e-5)


def test_regressor_predicts_and_explains_one_output() -> None:
    X, y = smooth_regression()
    reg = ShapNetRegressor(**{**FAST, "max_epochs": 30}).fit(X, y)
    assert reg.predict(X).shape == (len(X),)
    assert reg.score(X, y) > 0.8
    ex = reg.explain(X)
    assert ex.values.shape == (len(X), 3) and ex.base_values.shape == (len(X),)  # one output, as in shap
    assert ex.output_names is None
    np.testing.assert_allclose(ex.values.sum(1) + ex.base_values, reg.predict(X), atol=1e-4)
    # The first feature matters most, on average; shap's plots take the explanation as it is.
    assert np.abs(ex.values).mean(0).argmax() == 0
    shap.plots.waterfall(ex[0], show=False)
    shap.plots.bar(ex, show=False)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_same_random_state_same_model_and_callers_rng_untouched() -> None:
    X, y = blobs()
    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(1)
    a = ShapNetClassifier(**{**FAST, "max_epochs": 4, "consistency": 0.1}).fit(X, y)
    assert torch.equal(torch.rand(2), expected)
    b = ShapNetClassifier(**{**FAST, "max_epochs": 4, "consistency": 0.1}).fit(X, y)
    c = ShapNetClassifier(**{**FAST, "max_epochs": 4, "consistency": 0.1, "random_state": 1}).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    # And through clone and pickle.
    d = clone(a).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), d.predict_proba(X))
    e = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(X), e.predict_proba(X))


def test_grid_search_and_cross_val_score() -> None:
    X, y = blobs(n=90)
    params = {**FAST, "max_epochs": 5}
    scores = cross_val_score(ShapNetClassifier(**params), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.7
    search = GridSearchCV(ShapNetClassifier(**params), {"l1": [0.0, 0.05], "model": ["deep", "shallow"]}, cv=2)
    search.fit(X, y)
    assert set(search.best_params_) == {"l1", "model"}
    assert search.best_estimator_.score(X, y) > 0.7


# --------------------------------------------------------------------------- #
# Options
# --------------------------------------------------------------------------- #
def test_reference_options() -> None:
    X, y = blobs()
    X = X + 1.0  # non-zero mean
    mean = ShapNetClassifier(**{**FAST, "max_epochs": 2, "reference": "mean"}).fit(X, y)
    np.testing.assert_allclose(mean.reference_, X.mean(0), rtol=1e-6)
    torch.testing.assert_close(mean.model_.reference, torch.from_numpy(mean.reference_))
    # base_values are the logits at the reference.
    at_ref = mean.decision_function(mean.reference_[None])
    np.testing.assert_allclose(mean.explain(X[:3]).base_values, np.repeat(at_ref, 3, 0), atol=1e-5)
    np.testing.assert_allclose(mean.explain(mean.reference_[None]).values, 0.0, atol=1e-6)  # missingness
    zero = ShapNetClassifier(**{**FAST, "max_epochs": 2}).fit(X, y)
    np.testing.assert_array_equal(zero.reference_, np.zeros(4, np.float32))
    given = ShapNetClassifier(**{**FAST, "max_epochs": 2, "reference": [1, 2, 3, 4]}).fit(X, y)
    np.testing.assert_array_equal(given.reference_, [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"shape \(F,\) = \(4,\)"):
        ShapNetClassifier(reference=[1, 2]).fit(X, y)
    with pytest.raises(ValueError, match="'zero', 'mean'"):
        ShapNetClassifier(reference="median").fit(X, y)


def test_model_options_reach_the_shapnet() -> None:
    X, y = blobs(n=60)
    shallow = ShapNetClassifier(**{**FAST, "max_epochs": 1, "model": "shallow", "model_kwargs": {"groups": "gam"}})
    shallow.fit(X, y)
    assert isinstance(shallow.model_, ShallowShapNet) and shallow.model_.config["groups"] == "gam"
    deep = ShapNetClassifier(**{**FAST, "max_epochs": 1, "model_kwargs": {"channels": 3}, "prune": 0.25}).fit(X, y)
    assert deep.model_.config["channels"] == [3] and deep.model_.pruning.fraction == 0.25
    with pytest.raises(ValueError, match="model_kwargs may not set"):
        ShapNetClassifier(model_kwargs={"n_features": 3}).fit(X, y)
    with pytest.raises(ValueError, match="prune works with model='deep'"):
        ShapNetClassifier(model="shallow", prune=0.5).fit(X, y)


def test_harsanyi_model_explains_exactly_through_every_accessor() -> None:
    """model="harsanyi": a HarsanyiNet, no consistency loss under "auto" (its values are exact already), and
    the estimator's explanation equals the brute-force Shapley values of the fitted model's output."""
    import copy

    X, y = smooth_regression(n=120, f=5)
    reg = ShapNetRegressor(
        model="harsanyi",
        model_kwargs={"hidden": (16, 16)},
        max_epochs=20,
        lr=1e-2,
        early_stopping=False,
        reference="mean",
        random_state=0,
    ).fit(X, y)
    assert isinstance(reg.model_, HarsanyiNet) and reg.model_.config["hidden"] == [16, 16]
    assert reg.consistency_ == 0.0 and reg.score(X, y) > 0.5
    ex = reg.explain(X[:8])
    exact_model = copy.deepcopy(reg.model_).double()
    truth = exact_shapley(exact_model, torch.as_tensor(X[:8]), exact_model.reference)[..., 0].numpy()
    np.testing.assert_allclose(ex.values, truth, atol=1e-5)
    np.testing.assert_allclose(ex.values.sum(1) + ex.base_values, reg.predict(X[:8]), atol=1e-5)
    x = torch.tensor(X[:8], dtype=torch.float32)
    np.testing.assert_allclose(reg.captum_attribution().attribute(x).detach().numpy(), ex.values, atol=1e-5)
    np.testing.assert_allclose(reg.shap_explainer()(X[:8]).values, ex.values, atol=1e-5)
    # The classifier: the same model family, explained like the others (K = 3 logits).
    Xc, yc = blobs(n=60)
    clf = ShapNetClassifier(**{**FAST, **SMALL_HARSANYI, "consistency": "auto"}).fit(Xc, yc)
    assert isinstance(clf.model_, HarsanyiNet) and clf.consistency_ == 0.0 and clf.score(Xc, yc) > 0.8
    cex = clf.explain(Xc)
    assert cex.values.shape == (60, 4, 3)
    np.testing.assert_allclose(cex.values.sum(1) + cex.base_values, clf.decision_function(Xc), atol=1e-5)
    with pytest.raises(ValueError, match="prune works with model='deep' only, got model='harsanyi'"):
        ShapNetClassifier(model="harsanyi", prune=0.5).fit(Xc, yc)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"model": "wide"}, ValueError, "model must be one of"),
        ({"reg_layers": "first"}, ValueError, "reg_layers"),
        ({"l1": -0.1}, ValueError, "l1 must be"),
        ({"consistency": float("inf")}, ValueError, "consistency must be"),
        ({"consistency": "max"}, ValueError, "consistency must be 'auto' or a finite number"),
        ({"lr": 0.0}, ValueError, "lr must be"),
        ({"max_epochs": 0}, ValueError, "max_epochs"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
        ({"early_stopping": "yes"}, TypeError, "early_stopping must be a bool"),
        ({"model_kwargs": [("channels", 3)]}, TypeError, "model_kwargs must be a dict"),
    ],
)
def test_bad_parameters_raise_at_fit(params: dict, error: type, match: str) -> None:
    X, y = blobs(n=30)
    clf = ShapNetClassifier(**params)  # __init__ only stores
    with pytest.raises(error, match=match):
        clf.fit(X, y)


def test_auto_consistency_is_the_recommended_weight_for_deep_models_only() -> None:
    from shapnet_adapters.sklearn import RECOMMENDED_CONSISTENCY

    X, y = blobs(n=40)
    auto = {**FAST, "max_epochs": 1, "consistency": "auto"}
    assert ShapNetClassifier().get_params()["consistency"] == "auto"
    deep = ShapNetClassifier(**auto).fit(X, y)
    assert deep.consistency_ == RECOMMENDED_CONSISTENCY == 3.0
    shallow = ShapNetClassifier(**{**auto, "model": "shallow"}).fit(X, y)
    assert shallow.consistency_ == 0.0
    assert ShapNetClassifier(**{**FAST, "max_epochs": 1, "consistency": 0.5}).fit(X, y).consistency_ == 0.5


def test_bad_data_raises_clear_errors() -> None:
    X, y = blobs(n=30)
    with pytest.raises(ValueError, match="at least 2 classes, got 1 class"):
        ShapNetClassifier().fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="Unknown label type"):
        ShapNetClassifier().fit(X, np.linspace(0, 1, 30))
    clf = ShapNetClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but ShapNetClassifier is expecting 4"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.explain(np.full((2, 4), np.nan))


def test_l1_penalty_gives_sparser_explanations_and_consistency_changes_training() -> None:
    X, y = blobs()
    plain = ShapNetClassifier(**FAST).fit(X, y)
    sparse = ShapNetClassifier(**{**FAST, "l1": 0.5}).fit(X, y)
    assert np.abs(sparse.explain(X).values).sum() < 0.7 * np.abs(plain.explain(X).values).sum()
    every_layer = ShapNetClassifier(**{**FAST, "max_epochs": 2, "l1": 0.5, "reg_layers": "all"}).fit(X, y)
    last_layer = ShapNetClassifier(**{**FAST, "max_epochs": 2, "l1": 0.5}).fit(X, y)
    assert every_layer.history_[0]["train_loss"] > last_layer.history_[0]["train_loss"]
    consistent = ShapNetClassifier(**{**FAST, "max_epochs": 2, "consistency": 5.0}).fit(X, y)
    baseline = ShapNetClassifier(**{**FAST, "max_epochs": 2}).fit(X, y)
    assert consistent.history_[0]["train_loss"] > baseline.history_[0]["train_loss"]


def test_early_stopping_stops_and_falls_back_on_tiny_data() -> None:
    X, y = blobs(n=150)
    clf = ShapNetClassifier(max_epochs=200, lr=3e-2, patience=2, random_state=0).fit(X, y)
    assert clf.n_iter_ < 200 and "valid_loss" in clf.history_[0]
    with pytest.warns(UserWarning, match="early_stopping holds out"):
        tiny = ShapNetClassifier(max_epochs=2, random_state=0).fit(X[:6], y[:6])
    assert tiny.n_iter_ == 2  # no hold-out: every epoch ran, and none has a validation loss
    assert all(row.get("valid_loss") is None for row in tiny.history_)


def test_verbose_shows_a_tqdm_bar_over_epochs(capsys) -> None:
    X, y = blobs(n=30)
    ShapNetClassifier(**{**FAST, "max_epochs": 3, "verbose": 1}).fit(X, y)
    err = capsys.readouterr().err
    assert "ShapNetClassifier" in err and "3/3" in err and "epoch" in err
    ShapNetClassifier(**{**FAST, "max_epochs": 3}).fit(X, y)
    assert capsys.readouterr().err == ""


def test_verbose_bar_ends_at_n_iter_under_early_stopping(capsys) -> None:
    X, y = smooth_regression()
    reg = ShapNetRegressor(max_epochs=200, lr=3e-2, patience=1, early_stopping=True, random_state=0,
                           consistency=0.0, verbose=1).fit(X, y)
    assert reg.n_iter_ < 200
    err = capsys.readouterr().err
    assert f"{reg.n_iter_}/{reg.n_iter_}" in err and "early stopping" in err
    assert f"{reg.n_iter_ - 1}/{reg.n_iter_}" not in err.rsplit("\r", 1)[-1]  # the last state is complete


def test_captum_and_shap_accessors_explain_the_fitted_model() -> None:
    X, y = blobs(n=60)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = ShapNetClassifier(**{**FAST, "max_epochs": 3}).fit(frame, y)
    ex = clf.explain(frame)
    x = torch.tensor(X, dtype=torch.float32)
    attribution = clf.captum_attribution()
    assert attribution.forward_func is clf.model_ or getattr(attribution, "model", clf.model_) is clf.model_
    np.testing.assert_allclose(attribution.attribute(x, target=2).detach().numpy(), ex.values[..., 2], atol=1e-5)
    explainer = clf.shap_explainer()
    shap_ex = explainer(frame)
    np.testing.assert_allclose(shap_ex.values, ex.values, atol=1e-5)
    assert list(shap_ex.feature_names) == ["a", "b", "c", "d"]
    with pytest.raises(Exception, match="not fitted"):
        ShapNetClassifier().captum_attribution()


def test_predict_proba_calls_the_module_directly_with_the_same_numbers() -> None:
    """Inference bypasses skorch's DataLoader (its per-batch overhead dominated shap's many small calls);
    the numbers are those of skorch's forward."""
    X, y = blobs(n=200)
    clf = ShapNetClassifier(**{**FAST, "max_epochs": 2, "batch_size": 16}).fit(X, y)
    logits = clf.net_.forward(X.astype(np.float32), training=False).numpy().astype(np.float64)
    np.testing.assert_allclose(clf.decision_function(X), logits, rtol=1e-5, atol=1e-6)
    proba = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), proba / proba.sum(1, keepdims=True), rtol=1e-5)


def test_shap_explainer_on_the_estimator_points_to_shap_explainer() -> None:
    X, y = blobs(n=60)
    clf = ShapNetClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)
    with pytest.raises(TypeError, match=r"est.shap_explainer\(\)"):
        shap.Explainer(clf, X)(X[:2])
    values = shap.Explainer(clf.predict_proba, X[:20], algorithm="exact")(X[:2]).values
    assert values.shape == (2, 4, 3)  # the model-agnostic route still works, through predict_proba


def test_explain_pipeline_explains_raw_rows_with_their_names() -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import OneHotEncoder

    from shapnet_adapters.sklearn import explain_pipeline

    X, y = load_wine(return_X_y=True, as_frame=True)
    pipe = make_pipeline(StandardScaler(), ShapNetClassifier(**{**FAST, "max_epochs": 3})).fit(X, y)
    ex = explain_pipeline(pipe, X.iloc[:6])
    assert ex.feature_names == list(X.columns)
    np.testing.assert_allclose(ex.data, X.iloc[:6].to_numpy())  # raw units, for the plots
    np.testing.assert_allclose(ex.values, pipe[-1].explain(pipe[:-1].transform(X.iloc[:6])).values)
    np.testing.assert_allclose(ex.values.sum(1) + ex.base_values, pipe.decision_function(X.iloc[:6]), atol=1e-4)
    # A transformer that changes the columns: the model's features, named by get_feature_names_out.
    frame = pd.DataFrame({"colour": ["red", "blue", "red", "green"] * 10, "size": np.arange(40.0)})
    target = (frame["size"] % 2).to_numpy()
    encode = make_column_transformer((OneHotEncoder(), ["colour"]), (StandardScaler(), ["size"]))
    mixed = make_pipeline(encode, ShapNetClassifier(**{**FAST, "max_epochs": 1})).fit(frame, target)
    ex = explain_pipeline(mixed, frame.iloc[:3])
    assert ex.values.shape == (3, 4) and ex.feature_names[0].startswith("onehotencoder__colour")
    with pytest.raises(TypeError, match="last step is a ShapNetClassifier"):
        explain_pipeline(make_pipeline(StandardScaler()).fit(X), X)
