"""The fidelity benchmark: a CSV through the CLI, the API over arrays, and its building blocks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import fidelity
from benchmarks.methods import get_method
from shapnet import DeepShapNet, exact_shapley
from shapnet.datasets import from_arrays

SMALL = [
    "--epochs",
    "1",
    "--n-samples",
    "4",
    "--channels",
    "4",
    "--hidden",
    "8",
    "--budgets",
    "16",
    "--no-progress",
]


def test_cli_on_a_csv_with_categoricals_and_a_string_target(mixed_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fid"
    # The default set less shap_permutation, whose first call compiles numba code for half a minute.
    methods = "shapnet,shap_kernel,shap_exact,kernel_shap,shapley_value_sampling,deeplift,"
    methods += "integrated_gradients,random"
    assert fidelity.main(["--dataset", str(mixed_csv), *SMALL, "--methods", methods, "--out", str(out)]) == 0
    rows = pd.read_csv(out / "fidelity.csv")
    assert list(rows.columns) == list(fidelity.COLUMNS)
    payload = json.loads((out / "fidelity.json").read_text())
    # 4 numeric columns (price too) + 3 one-hot colours; two classes: the predicted class is explained.
    assert payload["dataset"]["name"] == "shop" and payload["dataset"]["n_features"] == 7
    assert "colour=red" in payload["dataset"]["feature_names"]
    assert payload["explained_output"] == "predicted class logit"
    by = rows.set_index("method")
    # Every method has a row; the samplers at 16 evaluations and shap Kernel at all 2^7 coalitions.
    for name in (
        "shapnet",
        "shap_kernel (16)",
        "shap_kernel (2^7=128)",
        "shap_exact",
        "kernel_shap (16)",
        "shapley_value_sampling (16)",
        "integrated_gradients",
        "random",
    ):
        assert name in by.index, name
    # Exact methods reproduce the truth up to float32 rounding; the ShallowShapNet control is exact.
    for exact in ("shap_exact", "shap_kernel (2^7=128)", "ShallowShapNet (built-in, exact control)"):
        assert by.loc[exact, "rel_l2"] < 1e-5, exact  # (Spearman: float32 noise reorders near-ties)
    assert by.loc["shapnet", "evals_per_sample"] == 1.0
    assert by.loc["shap_kernel (16)", "evals_per_sample"] > 16
    # DeepLift's rules cannot act on a ShapNet's ReLUs: a row that says why, not a number.
    assert by.loc["deeplift", "status"] == "unsupported" and "ReLU" in by.loc["deeplift", "note"]
    assert by.loc["random", "rel_l2"] > by.loc["shapnet", "rel_l2"]
    assert payload["ratio"]["per_family"]["shap_kernel"]["ratio"] > 0  # 2^F coalitions always reach it
    assert (out / "fidelity.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "rel_l2 (lower is better)" in printed and "spearman (higher is better)" in printed


def test_run_fidelity_on_a_regression_explains_the_single_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5)).astype(np.float32)
    y = X[:, 0] * X[:, 1] + X[:, 2] + 0.1 * rng.normal(size=120)
    data = from_arrays(X, y, task="regression", name="toy")
    table = fidelity.run_fidelity(
        data,
        methods=["shap_exact", "shapley_value_sampling"],
        budgets=[10],
        n_samples=3,
        epochs=1,
        channels=4,
        hidden=(8,),
        progress=False,
        log=lambda _: None,
    )
    assert isinstance(table, pd.DataFrame) and list(table.columns) == list(fidelity.COLUMNS)
    assert list(table["method"])[:2] == ["shapnet", "shap_exact"]  # shapnet is always run, first
    assert table.set_index("method").loc["shap_exact", "rel_l2"] < 1e-5
    assert table.attrs["settings"]["dataset"] == "toy" and table.attrs["ratio"]["shapnet_rel_l2"] > 0
    assert not any(tmp_path.iterdir())  # out=None writes nothing


def test_run_fidelity_refuses_what_it_cannot_measure() -> None:
    rng = np.random.default_rng(0)
    wide = from_arrays(rng.normal(size=(40, 20)), rng.integers(0, 2, 40))
    with pytest.raises(ValueError, match="at most 16 features"):
        fidelity.run_fidelity(wide, log=lambda _: None)
    small = from_arrays(rng.normal(size=(40, 4)), rng.integers(0, 2, 40))
    with pytest.raises(ValueError, match="unknown attribution method 'nope'"):
        fidelity.run_fidelity(small, methods=["nope"], log=lambda _: None)


def test_a_bad_dataset_fails_in_one_line_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "fid"
    for bad in (str(tmp_path / "missing.csv"), "no_such_dataset"):
        with pytest.raises(SystemExit) as exit_info:
            fidelity.main(["--dataset", bad, *SMALL, "--out", str(out)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert not out.exists()


def test_sampler_budgets_are_in_model_evaluations() -> None:
    assert fidelity.budget_for("shap_kernel", 256, 8) == {"nsamples": 256}
    assert fidelity.budget_for("shap_permutation", 256, 8) == {"permutations": 15}  # 17 rows each
    assert fidelity.budget_for("shapley_value_sampling", 64, 8) == {"n_samples": 8}  # 8 rows each
    assert fidelity.budget_for("shapley_value_sampling", 4, 8) == {"n_samples": 1}
    with pytest.raises(ValueError, match="unknown sampler"):
        fidelity.budget_for("lime", 10, 8)


def test_shap_exact_from_the_registry_equals_exact_shapley() -> None:
    torch.manual_seed(0)
    model = DeepShapNet(6, 3, channels=4, hidden=(8,), reference=torch.linspace(-0.3, 0.3, 6)).eval()
    x = torch.randn(5, 6)
    target = torch.tensor([0, 1, 2, 1, 0])
    got = get_method("shap_exact")(model, x, target, background=model.reference.unsqueeze(0), seed=0)
    truth = exact_shapley(model.double(), x.double(), model.reference.double())[torch.arange(5), :, target]
    np.testing.assert_allclose(got.numpy(), truth.numpy(), rtol=1e-5, atol=1e-6)


def test_time_to_reach_interpolates_in_log_log() -> None:
    # Errors 0.1, 0.01 at 1 s and 100 s: the error 0.0316 (half-way in log) is reached at 10 s.
    hit = fidelity.time_to_reach([(1.0, 0.1), (100.0, 0.01)], 10**-1.5)
    assert hit["status"] == "interpolated" and hit["seconds"] == pytest.approx(10.0)
    assert fidelity.time_to_reach([(1.0, 0.1)], 0.5)["status"] == "first budget"
    # A failed fit before the hit (Kernel SHAP's error 7e15 at a tiny budget) is no bracket: an upper bound.
    failed = fidelity.time_to_reach([(1.0, 7e15), (2.0, 0.2)], 0.3)
    assert failed == {"status": "first budget", "seconds": 2.0, "budget_index": 1}
    assert fidelity.time_to_reach([(1.0, math.nan), (2.0, 0.2)], 0.3)["status"] == "first budget"
    assert fidelity.time_to_reach([(1.0, 0.1), (2.0, 0.05)], 0.01) == {
        "status": "not reached",
        "seconds": None,
        "budget_index": None,
    }


def test_rivals_harsanyi_control_and_fastshap_with_its_training_and_payback() -> None:
    """``controls=("shallow", "harsanyi")``: both exact by construction; ``fastshap`` is trained for the Deep
    ShapNet first (its training time in its own column) and the summary says when that is paid back."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    data = from_arrays(X, np.where(X[:, 0] * X[:, 1] + X[:, 2] > 0, "a", "b"), name="toy6")
    table = fidelity.run_fidelity(
        data,
        methods=["fastshap", "shapley_value_sampling"],
        budgets=[6, 24, 96],
        n_samples=6,
        epochs=3,
        channels=4,
        hidden=(8,),
        controls=("shallow", "harsanyi"),
        bracket=False,
        progress=False,
        log=lambda _: None,
    )
    by = table.set_index("method")
    assert by.loc["HarsanyiNet (built-in, exact control)", "rel_l2"] < 1e-5
    assert by.loc["ShallowShapNet (built-in, exact control)", "rel_l2"] < 1e-5
    assert table.attrs["models"]["harsanyi"]["config"]["hidden"] == [100, 100]
    fast = by.loc["fastshap"]
    assert fast["status"] == "ok" and fast["training_seconds"] > 0 and fast["evals_per_sample"] == 1 + 1 / 6
    assert by["training_seconds"].notna().sum() == 1  # only the amortised method has a training cost
    payback = table.attrs["ratio"]["payback"]["fastshap"]
    assert payback["training_seconds"] == fast["training_seconds"]
    assert set(payback["per_family"]) == {"shapley_value_sampling"}
    assert any("fastshap (amortised)" in line for line in table.attrs["ratio"]["summary"])
    with pytest.raises(ValueError, match="unknown controls"):
        fidelity.run_fidelity(data, controls=("gam",), log=lambda _: None)


def test_payback_is_training_time_over_the_time_saved_per_sample() -> None:
    rows = [
        {"method": "shapnet", "family": "shapnet", "status": "ok", "rel_l2": 0.05, "sec_per_sample": 1e-5},
        *(
            {
                "method": f"svs ({b})",
                "family": "shapley_value_sampling",
                "status": "ok",
                "budget": b,
                "rel_l2": err,
                "sec_per_sample": sec,
            }
            for b, sec, err in ((10, 1e-3, 0.1), (1000, 1e-1, 0.01))
        ),
        {
            "method": "fastshap",
            "family": "fastshap",
            "status": "ok",
            "rel_l2": 10**-1.5,
            "sec_per_sample": 1e-4,
            "training_seconds": 10.0,
        },
    ]
    entry = fidelity._payback(rows)["fastshap"]["per_family"]["shapley_value_sampling"]
    # The sampler reaches 10**-1.5 half-way in log-log: 1e-2 s per sample, 1e-2 - 1e-4 saved per sample.
    assert entry["status"] == "interpolated" and entry["sampler_seconds"] == pytest.approx(1e-2)
    assert entry["samples"] == pytest.approx(10.0 / (1e-2 - 1e-4))
    rows[-1]["rel_l2"] = 0.001  # never reached by the sampler: never paid back
    assert fidelity._payback(rows)["fastshap"]["per_family"]["shapley_value_sampling"]["samples"] is None
