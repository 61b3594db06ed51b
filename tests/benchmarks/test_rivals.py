"""The rivals on the harness: FastSHAP as a registry method (amortised, cached, beats random in ROAR),
HarsanyiNet through the ROAR and fidelity paths, the sampled truth and FastSHAP's break-even."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import rivals, roar
from benchmarks.methods import get_method
from benchmarks.models import ModelConfig, default_config, instantiate, model_factory, train_model
from shapnet import HarsanyiNet, exact_shapley
from shapnet.datasets import Dataset

RELEVANT = (0, 1, 2)  # the label depends on these 3 of 8 features
N_FEATURES = 8
# A few epochs only: the tests check the plumbing and a large ROAR effect, not tuned accuracy.
FASTSHAP = dataclasses.replace(
    get_method("fastshap"),
    budget={
        **get_method("fastshap").budget,
        "hidden": (32,),
        "epochs": 40,
        "n_coalitions": 16,
        "patience": 40,
    },
)


def synthetic(n_train: int = 400, n_test: int = 200, seed: int = 0) -> Dataset:
    """y = [x0 + x1 + x2 > 0] with 5 irrelevant standard normal features."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_test, N_FEATURES)).astype(np.float32)
    y = (X[:, list(RELEVANT)].sum(1) > 0).astype(np.int64)
    return Dataset(
        name="synthetic_3_of_8",
        X_train=X[:n_train],
        X_test=X[n_train:],
        y_train=y[:n_train],
        y_test=y[n_train:],
        feature_names=[f"x{i}" for i in range(N_FEATURES)],
        class_names=["neg", "pos"],
        task="classification",
        image_shape=None,
        mean=np.zeros(N_FEATURES, np.float32),
        scale=np.ones(N_FEATURES, np.float32),
    )


@pytest.fixture(scope="module")
def mlp() -> torch.nn.Module:
    data = synthetic()
    config = ModelConfig(kind="mlp", hidden=(16,), epochs=15, batch_size=64, lr=1e-2)
    model = instantiate(model_factory("mlp", data, config), 0)
    return train_model(model, data.X_train, data.y_train, config, seed=0)


def test_fastshap_needs_training_then_explains_from_its_cache(mlp: torch.nn.Module, tmp_path: Path) -> None:
    data = synthetic()
    x, target = torch.as_tensor(data.X_test[:16]), torch.ones(16, dtype=torch.long)
    background = torch.zeros(1, N_FEATURES)
    spec = dataclasses.replace(
        FASTSHAP, budget={**FASTSHAP.budget, "lr": 2e-3}
    )  # not trained in this process
    with pytest.raises(ValueError, match="prepare_for"):
        spec(mlp, x, target, background=background, seed=0)
    info = spec.prepare_for(mlp, data.X_train, background=background, seed=0, cache_dir=tmp_path)
    assert info["cached"] is False and info["training_seconds"] > 0 and info["model_evaluations"] > 0
    values = spec(mlp, x, target, background=background, seed=0)
    # Efficiency after the normalisation: the values sum to f(x) - f(reference) for the explained output.
    with torch.no_grad():
        gap = mlp(x)[:, 1] - mlp(background)[:, 1]
    torch.testing.assert_close(values.sum(1), gap, atol=1e-4, rtol=1e-4)
    # Saved with its cost; another process (here: a cleared in-process cache) loads it instead of training.
    from benchmarks import methods

    methods._FASTSHAP_INFO.clear()
    methods._FASTSHAP.clear()
    again = spec.prepare_for(mlp, data.X_train, background=background, seed=0, cache_dir=tmp_path)
    assert again["cached"] is True and again["training_seconds"] == info["training_seconds"]
    torch.testing.assert_close(spec(mlp, x, target, background=background, seed=0), values)
    assert get_method("random").prepare_for(mlp, data.X_train, background=background, seed=0) == {}


def test_fastshap_beats_random_ranking_in_roar(tmp_path: Path) -> None:
    result = roar.run_roar(
        roar.RoarSettings(
            dataset=synthetic(),
            methods=[FASTSHAP, "random"],
            fractions=(0.375,),
            repeats=1,
            modes=("roar",),
            model=ModelConfig(kind="mlp", hidden=(16,), epochs=15, batch_size=64, lr=1e-2),
            out=tmp_path,
            n_jobs=1,
            progress=False,
        ),
        log=lambda _: None,
    )
    assert not result.unsupported
    area = {r["method"]: r["area"] for r in result.summary.to_dict("records")}
    # Removing 3 of 8 features: FastSHAP's top 3 are the label's features, so accuracy falls towards
    # chance (0.5); a random choice of 3 leaves most of the signal (about 0.8 here).
    assert area["fastshap"] < area["random"] - 0.03, area
    info = result.methods["fastshap"]
    assert info["training_seconds"] > 0 and info["model_evaluations"] > 0  # the amortised cost, reported


def test_harsanyi_through_roar_and_fidelity(tmp_path: Path) -> None:
    data = synthetic(n_train=200, n_test=100)
    config = dataclasses.replace(default_config("harsanyi", data.name), hidden=(16, 16), epochs=3)
    factory = model_factory("harsanyi", data, config)
    model = instantiate(factory, 0)
    assert isinstance(model, HarsanyiNet)
    torch.testing.assert_close(model.reference, torch.as_tensor(data.X_train.mean(0)))
    # Fidelity path: the registry's built-in method is exact for a HarsanyiNet (float64).
    train_model(model, data.X_train, data.y_train, config, seed=0)
    exact_model = model.double()
    x = torch.as_tensor(data.X_test[:6], dtype=torch.float64)
    target = torch.tensor([0, 1, 0, 1, 1, 0])
    values = get_method("shapnet").fn(exact_model, x, target, background=exact_model.reference[None], seed=0)
    truth = exact_shapley(exact_model, x, exact_model.reference)[torch.arange(6), :, target]
    torch.testing.assert_close(values, truth, atol=1e-9, rtol=1e-9)
    # ROAR path: the built-in values are ranked, retrained and scored like any other method.
    result = roar.run_roar(
        roar.RoarSettings(
            dataset=data,
            methods=["shapnet", "random"],
            fractions=(0.5,),
            repeats=1,
            model=config,
            out=tmp_path,
            n_jobs=1,
            progress=False,
        ),
        log=lambda _: None,
    )
    assert not result.unsupported
    assert np.isfinite(result.summary["area"]).all() and len(result.summary) == 4


def test_consistency_weight_reaches_the_training_loss() -> None:
    data = synthetic(n_train=128, n_test=8)
    plain = default_config("deep", data.name, epochs=1)
    weighted = dataclasses.replace(plain, consistency=10.0)
    models = [
        train_model(instantiate(model_factory("deep", data, c), 0), data.X_train, data.y_train, c, seed=0)
        for c in (plain, weighted)
    ]
    assert any(
        not torch.equal(a, b)
        for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values())
    )
    with pytest.raises(ValueError, match="consistency"):
        ModelConfig(kind="deep", consistency=-1.0)


def test_permutation_estimate_is_unbiased_with_honest_standard_errors() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    x, reference = torch.randn(4, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 2])
    truth = exact_shapley(net, x, reference)[torch.arange(4), :, target]
    estimate, se = rivals.permutation_shapley(net, x, reference, target, pairs=400, seed=1)
    z = ((estimate - truth) / se.clamp_min(1e-12)).abs()
    assert float(z.max()) < 5 and float((estimate - truth).norm() / truth.norm()) < 0.05
    # Efficiency holds for every permutation, so exactly for the mean.
    with torch.no_grad():
        gap = net(x)[torch.arange(4), target] - net(reference[None])[0, target]
    torch.testing.assert_close(estimate.sum(1), gap)


def _row(method: str, budget: int, error: float, seconds: float, evaluations: float, **extra: float) -> dict:
    return {
        "dataset": "d",
        "model": "mlp",
        "method": method,
        "budget": budget,
        "rel_l2": error,
        "seconds_per_sample": seconds,
        "evaluations_per_sample": evaluations,
        **extra,
    }


def test_break_even_interpolates_the_matching_sampling_budget() -> None:
    rows = [
        _row("fastshap", 0, 0.1, 0.001, 1.0, training_seconds=10.0, training_evaluations=1e5),
        _row("shapley_value_sampling", 1, 0.4, 0.01, 10.0),
        _row("shapley_value_sampling", 16, 0.025, 0.16, 160.0),
    ]
    (pay,) = rivals.payback(rows)
    # log-linear halfway between the budgets (0.1 is the geometric mean of 0.4 and 0.025): 4 permutations.
    assert math.isclose(pay["sampling_permutations"], 4.0, rel_tol=1e-9)
    assert math.isclose(pay["sampling_seconds_per_sample"], 0.04, rel_tol=1e-9)
    assert math.isclose(pay["break_even_samples_time"], 10.0 / (0.04 - 0.001), rel_tol=1e-9)
    assert math.isclose(pay["break_even_samples_evaluations"], 1e5 / (40.0 - 1.0), rel_tol=1e-9)
    assert pay["match"] == "interpolated"
    worse = [dict(rows[0], rel_l2=0.01), *rows[1:]]
    assert rivals.payback(worse)[0]["match"].startswith("lower bound")
    better = [dict(rows[0], rel_l2=0.9), *rows[1:]]
    assert rivals.payback(better)[0]["match"].startswith("upper bound")


def test_cli_bad_dataset_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert rivals.main(["--datasets", "nope", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: datasets must be registry names")


def test_roar_image_models_must_be_trained_in_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = [
        "--datasets",
        "mnist",
        "--image-models",
        "mlp",
        "--roar-image-models",
        "deep",
        "--out",
        str(tmp_path),
    ]
    assert rivals.main(argv) == 2
    assert "roar_image_models ['deep'] are not among image_models ['mlp']" in capsys.readouterr().err


def test_earlier_model_records_are_kept_in_dataset_order(tmp_path: Path) -> None:
    path = tmp_path / "models.csv"
    path.write_text(
        "dataset,model,class,training_seconds,weights_hash\n"
        "wine,mlp,Sequential,0.1,1234e5\n"  # digits with one "e": still a hash, not a number
        "wine,deep,DeepShapNet,9.5,9ed00fb98f449141\n"
        "diabetes,deep,DeepShapNet,1.2,3715ef197d0e9431\n"
    )
    new = {"dataset": "diabetes", "model": "deep", "class": "DeepShapNet", "training_seconds": 0.5}
    got = rivals._with_earlier_models(path, [dict(new, weights_hash="aa")], ["wine", "diabetes"])
    assert [(m["dataset"], m["model"]) for m in got] == [
        ("wine", "deep"),
        ("wine", "mlp"),
        ("diabetes", "deep"),
    ]
    assert got[1]["weights_hash"] == "1234e5"
    assert got[2]["weights_hash"] == "aa"  # this run's record replaces the earlier one


def test_a_partial_report_keeps_the_other_datasets(tmp_path: Path) -> None:
    """A report-only run for one dataset rewrites the tables and files from every dataset measured into the
    folder, so that a run on one dataset never drops the others' rows."""
    header = ",".join(rivals.EXPLANATION_COLUMNS)
    rows = [
        f"{d},mlp,fastshap,0,32,4e-05,1.0,0.15,0.95,0.9,exact,0.0,100.0,300000" for d in ("wine", "diabetes")
    ] + [
        f"{d},mlp,shapley_value_sampling,{b},32,{5e-5 * b},{10 * b},{0.2 / b},0.97,0.95,exact,0.0,,"
        for d in ("wine", "diabetes")
        for b in (1, 4)
    ]
    (tmp_path / "explanations.csv").write_text("\n".join([header, *rows]) + "\n")
    settings = rivals.RivalsSettings(
        datasets=["wine"], out=str(tmp_path), roar=False, explanations=False, timing_rounds=0, progress=False
    )
    rivals.run_rivals(settings, log=lambda _: None)
    import pandas as pd

    assert set(pd.read_csv(tmp_path / "payback.csv").dataset) == {"wine", "diabetes"}
    assert "diabetes" in (tmp_path / "rivals.md").read_text()
    assert (tmp_path / "explanations.csv").read_text().count("\n") == 1 + len(rows)  # nothing lost
