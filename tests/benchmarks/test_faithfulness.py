"""The faithfulness benchmark: a CSV through the CLI, the API with a user's model, images, and its helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmarks import faithfulness
from benchmarks.methods import DEFAULT_METHODS
from shapnet.datasets import from_arrays

SMALL = ["--n-samples", "6", "--n-sensitivity", "2", "--epochs", "1", "--max-train", "300", "--no-progress"]
TABULAR = ("infidelity", "sensitivity_max", "faithfulness_corr", "monotonicity_corr", "pixel_flipping")


def test_cli_on_a_csv_with_categoricals_and_a_string_target(mixed_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "f"
    assert faithfulness.main(["--dataset", str(mixed_csv), *SMALL, "--epochs", "5", "--out", str(out)]) == 0
    rows = pd.read_csv(out / "faithfulness.csv")
    assert list(rows.columns) == list(faithfulness.COLUMNS)
    assert list(rows["method"]) == list(DEFAULT_METHODS)  # the ROAR benchmark's set
    assert (rows["status"] == "ok").all()
    for metric in TABULAR:
        assert np.isfinite(rows[metric]).all(), metric
    assert rows["road_morf"].isna().all()  # images only
    by = rows.set_index("method")
    # ShapNet's own Shapley values track removals of its features better than a random ranking.
    assert by.loc["shapnet", "faithfulness_corr"] > by.loc["random", "faithfulness_corr"]
    payload = json.loads((out / "faithfulness.json").read_text())
    assert payload["dataset"] == "shop" and payload["n_samples"] == 6
    assert payload["directions"]["infidelity"] == "lower"
    # The Quantus adapter and the registry's (Captum adapter) values are the same numbers.
    assert payload["checks"]["shapnet_quantus_vs_captum_max_abs_diff"] < 1e-6
    assert (out / "faithfulness.png").stat().st_size > 0
    assert "infidelity (lower is better)" in capsys.readouterr().out


def test_run_faithfulness_with_a_users_model_on_a_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    data = from_arrays(X, X[:, 0] - 2 * X[:, 1] + 0.1 * rng.normal(size=200), task="regression", name="line")
    table = faithfulness.run_faithfulness(
        data,
        model_factory=lambda: nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1)),
        methods=["shapnet", "random", "integrated_gradients"],
        n_samples=8,
        n_sensitivity=2,
        epochs=3,
        progress=False,
        log=lambda _: None,
    )
    by = table.set_index("method")
    # Only a ShapNet has built-in values: the row says why; the other methods explain the plain MLP.
    assert by.loc["shapnet", "status"] == "unsupported" and "ShapNet" in by.loc["shapnet", "reason"]
    for name in ("random", "integrated_gradients"):
        assert by.loc[name, "status"] == "ok"
        assert all(math.isfinite(by.loc[name, m]) for m in TABULAR), name
    assert by.loc["integrated_gradients", "faithfulness_corr"] > by.loc["random", "faithfulness_corr"]
    assert table.attrs["model"]["kind"] == "custom" and table.attrs["model"]["metric"] == "R2"
    assert not any(tmp_path.iterdir())


def test_images_have_road_and_unsupported_rows(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    argv = ["--dataset", "digits", *SMALL, "--methods", "shapnet,random,deeplift", "--out", str(out)]
    assert faithfulness.main(argv) == 0
    by = pd.read_csv(out / "faithfulness.csv").set_index("method")
    assert list(by.index) == ["shapnet", "random", "deeplift"]
    for name in ("shapnet", "random"):
        for metric in faithfulness.METRICS:
            assert math.isfinite(by.loc[name, metric]), (name, metric)
        assert 0.0 <= by.loc[name, "road_morf"] <= 1.0 and 0.0 <= by.loc[name, "road_lerf"] <= 1.0
    # DeepLift cannot act on a ShapNet's ReLUs: reported with the reason, not run.
    assert by.loc["deeplift", "status"] == "unsupported" and "ReLU" in by.loc["deeplift", "reason"]
    assert by.loc["deeplift", list(faithfulness.METRICS)].isna().all()


def test_bad_inputs_fail_in_one_line_and_leave_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "f"
    for argv in (["--dataset", "no_such_dataset"], ["--methods", "nope"], ["--model", "no_such_module:f"]):
        with pytest.raises(SystemExit) as exit_info:
            faithfulness.main([*argv, *SMALL, "--out", str(out)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and "Traceback" not in err, argv
        assert not out.exists()


def test_reference_replacement_and_subset_removal() -> None:
    arr = np.arange(12, dtype=np.float32).reshape(2, 6)
    reference = -np.arange(6, dtype=np.float32)
    out = faithfulness.reference_replacement(
        arr, np.array([[0, 5], [2, 3]]), reference, perturb_baseline="black"
    )
    np.testing.assert_array_equal(out, [[0, 1, 2, 3, 4, -5], [6, 7, -2, -3, 10, 11]])
    np.testing.assert_array_equal(arr[0], np.arange(6))  # the input is not modified

    x = torch.randn(64, 1, 4, 4)
    ref = torch.full((1, 4, 4), 7.0)
    mask, perturbed = faithfulness.subset_removal(ref, seed=0)(x)
    assert mask.shape == x.shape and set(mask.unique().tolist()) == {0.0, 1.0}
    removed = mask.bool()
    assert 0.3 < mask.mean() < 0.7  # each pixel with probability 1/2
    assert torch.equal(perturbed[removed], torch.full_like(x, 7.0)[removed])
    assert torch.equal(perturbed[~removed], x[~removed])
    # Channels of a pixel are removed together.
    mask3, _ = faithfulness.subset_removal(torch.zeros(3, 4, 4), seed=1)(torch.randn(8, 3, 4, 4))
    assert torch.equal(mask3, mask3[:, :1].expand_as(mask3))


def test_rivals_harsanyi_built_in_values_and_fastshap_with_its_training_time() -> None:
    """``model="harsanyi"``: its built-in values go through the same metrics (and the Quantus adapter agrees);
    ``fastshap`` is trained for the explained MLP first, and its training time has its own column."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    data = from_arrays(X, np.where(X[:, 0] + X[:, 1] > 0, "up", "down"), name="updown")
    common = {"n_samples": 8, "n_sensitivity": 2, "epochs": 10, "progress": False, "log": lambda _: None}
    table = faithfulness.run_faithfulness(data, model="harsanyi", methods=["shapnet", "random"], **common)
    assert table.attrs["model"]["class"] == "HarsanyiNet"
    by = table.set_index("method")
    assert (by["status"] == "ok").all() and by["training_seconds"].isna().all()
    assert by.loc["shapnet", "infidelity"] < by.loc["random", "infidelity"]
    assert by.loc["shapnet", "faithfulness_corr"] > by.loc["random", "faithfulness_corr"] + 0.5
    assert table.attrs["checks"]["shapnet_quantus_vs_captum_max_abs_diff"] < 1e-6
    table = faithfulness.run_faithfulness(data, model="mlp", methods=["fastshap", "random"], **common)
    by = table.set_index("method")
    assert (by["status"] == "ok").all()
    assert by.loc["fastshap", "training_seconds"] > 0 and math.isnan(by.loc["random", "training_seconds"])
    assert by.loc["fastshap", "faithfulness_corr"] > by.loc["random", "faithfulness_corr"] + 0.5
