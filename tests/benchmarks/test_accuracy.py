"""The accuracy benchmark: real training through the estimators and skorch, resumable cells, skip reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import accuracy
from benchmarks.models import ModelConfig, build_model
from shapnet.datasets import from_arrays


def test_mlp_width_matches_the_parameter_budget() -> None:
    for n_features, n_outputs, budget in [(8, 10, 37_000), (104, 2, 1_400_000), (13, 3, 5_000)]:
        width = accuracy._mlp_width(n_features, n_outputs, budget)
        mlp = build_model(ModelConfig(kind="mlp", hidden=(width, width)), (n_features,), n_outputs, seed=0)
        params = sum(p.numel() for p in mlp.parameters())
        assert abs(params - budget) / budget < 0.05, (n_features, width, params)


def test_skip_reasons() -> None:
    assert accuracy.skip_reason("wine", "vision", 13, image=False) == "VisionShapNet is for images"
    assert "306,936 pair modules" in accuracy.skip_reason("mnist", "pairs", 784, image=True)
    assert accuracy.skip_reason("digits", "pairs", 64, image=True) is None
    assert accuracy.skip_reason("digits", "vision", 64, image=True) is None


def test_runs_scores_and_resumes_without_rerunning(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(accuracy, "DEFAULT_RECIPE", (3, 64))  # keep the test fast
    out = tmp_path / "acc"
    argv = [
        "--dataset",
        "wine,diabetes",
        "--models",
        "gam,deep,mlp,logreg,hgb,vision",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert accuracy.main(argv) == 0
    cells = accuracy.cell_file(out / "cells.csv").read()
    assert len(cells) == 12
    scored = [c for c in cells if c["score"] is not None]
    assert {c["metric"] for c in scored} == {"accuracy", "r2"}  # the regression keeps its R² column
    wine = {c["model"]: c["score"] for c in scored if c["dataset"] == "wine"}
    assert wine["logreg"] > 0.9 and wine["hgb"] > 0.8 and 0.0 <= wine["gam"] <= 1.0
    assert {c["model"] for c in cells if c["skipped"]} == {"vision"}
    mlp = next(c for c in scored if c["model"] == "mlp" and c["dataset"] == "wine")
    deep = next(c for c in scored if c["model"] == "deep" and c["dataset"] == "wine")
    assert abs(mlp["params"] - deep["params"]) / deep["params"] < 0.05  # "an MLP of similar size"
    printed = capsys.readouterr().out
    assert "deep - mlp (pts)" in printed and "n/a" in printed and "higher is better" in printed
    assert "| 1.0000 " in printed and "1.0000 ±" not in printed  # one seed: plain numbers
    for name in ("accuracy.csv", "accuracy.json", "accuracy.png"):
        assert (out / name).stat().st_size > 0

    # A second call with the same cells trains nothing; a new seed adds only its own cells.
    assert accuracy.main(argv) == 0
    assert len((out / "cells.csv").read_text().splitlines()) == 1 + 12
    assert (
        accuracy.main(["--dataset", "wine", "--models", "logreg", "--out", str(out), "--seeds", "0,1"]) == 0
    )
    assert len((out / "cells.csv").read_text().splitlines()) == 1 + 13


def test_cli_on_a_csv_with_categoricals_and_a_string_target(
    mixed_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(accuracy, "DEFAULT_RECIPE", (2, 64))
    out = tmp_path / "acc"
    assert (
        accuracy.main(
            [
                "--dataset",
                str(mixed_csv),
                "--models",
                "gam,logreg,hgb",
                "--seeds",
                "0,1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    cells = pd.read_csv(out / "accuracy.csv")
    assert set(cells["dataset"]) == {"shop"} and len(cells) == 6
    assert set(cells["metric"]) == {"accuracy"} and cells["score"].between(0, 1).all()
    assert cells.loc[cells["model"] == "logreg", "score"].min() > 0.8  # the label is nearly linear


def test_run_accuracy_over_datasets_from_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    classes = from_arrays(X, np.where(X[:, 0] > 0, "up", "down"), name="updown")
    values = from_arrays(X, X[:, 1] * 2 + 0.1 * rng.normal(size=150), task="regression", name="line")
    frame = accuracy.run_accuracy(
        [classes, values], models=["logreg", "hgb"], seeds=[0, 1], progress=False, log=lambda _: None
    )
    assert (
        isinstance(frame, pd.DataFrame)
        and len(frame) == 8
        and list(frame.columns) == list(accuracy.CELL_COLUMNS)
    )
    assert set(frame.loc[frame["dataset"] == "line", "metric"]) == {"r2"}
    assert frame.loc[frame["dataset"] == "line", "score"].min() > 0.9
    table = {row["dataset"]: row for row in frame.attrs["table"]}
    assert "±" in table["updown"]["LogisticRegression"]  # two seeds: mean ± sample std
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="distinct names"):
        accuracy.run_accuracy([classes, classes], models=["logreg"], log=lambda _: None)
    with pytest.raises(ValueError, match="unknown models"):
        accuracy.run_accuracy(classes, models=["svm"], log=lambda _: None)


def test_bad_names_fail_cleanly_and_leave_nothing(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        accuracy.main(["--models", "svm", "--out", str(tmp_path / "a")])
    out = tmp_path / "b"
    with pytest.raises(SystemExit) as exit_info:
        accuracy.main(["--dataset", "wine,iris", "--models", "logreg", "--out", str(out)])
    assert exit_info.value.code == 2 and "iris" in capsys.readouterr().err
    assert not out.exists()  # wine's cell was not run: every dataset loads first


def small_digits(n_train: int, n_test: int = 100):
    """The first rows of scikit-learn's digits (8x8 images, 10 classes)."""
    from shapnet.datasets import load_dataset

    ds = load_dataset("digits", random_state=0)
    return type(ds)(
        **{
            **ds.__dict__,
            "X_train": ds.X_train[:n_train],
            "y_train": ds.y_train[:n_train],
            "X_test": ds.X_test[:n_test],
            "y_test": ds.y_test[:n_test],
        }
    )


def test_vision_cell_on_digits_trains_a_vision_shapnet(monkeypatch) -> None:
    small = small_digits(200)
    monkeypatch.setattr(accuracy, "VISION_EPOCHS", 1)
    torch.manual_seed(0)
    row = accuracy.run_cell(small, "vision", 0)
    assert row["model"] == "vision" and row["epochs"] == 1 and row["params"] > 0
    assert 0.0 <= row["score"] <= 1.0 and np.isfinite(row["seconds"])


def test_harsanyi_cells_on_a_table_and_on_images(monkeypatch) -> None:
    """``harsanyi``: the estimator's HarsanyiNet on tables; a VisionHarsanyiNet on image sets (ROAR recipe)."""
    from shapnet import HarsanyiNet, VisionHarsanyiNet

    monkeypatch.setattr(accuracy, "DEFAULT_RECIPE", (20, 64))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    updown = from_arrays(X, np.where(X[:, 0] + X[:, 1] > 0, "up", "down"), name="updown")
    frame = accuracy.run_accuracy(updown, models=["deep", "harsanyi"], progress=False, log=lambda _: None)
    cell = frame.set_index("model").loc["harsanyi"]
    assert cell["params"] == sum(p.numel() for p in HarsanyiNet(4, 2).parameters())  # two layers of 100
    assert cell["score"] > 0.8
    line = frame.attrs["table"][0]
    assert line["HarsanyiNet"] == f"{cell['score']:.4f}"
    deep = frame.set_index("model").loc["deep", "score"]
    assert line["harsanyi - deep (pts)"] == f"{100 * (cell['score'] - deep):+.2f}"

    row = accuracy.run_cell(small_digits(300), "harsanyi", 0)
    model = VisionHarsanyiNet(1, 10, image_size=(8, 8), channels=16, n_layers=2)
    assert row["params"] == sum(p.numel() for p in model.parameters()) and row["epochs"] == 6
    assert row["score"] > 0.5  # 10 classes: chance is 0.1
    assert "not run for time" in accuracy.skip_reason("mnist", "harsanyi", 784, image=True)
    assert accuracy.skip_reason("digits", "harsanyi", 64, image=True) is None


def test_scale_target_standardises_a_regression_and_keeps_r2() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    line = from_arrays(X, 150 + 80 * (X[:, 1] + 0.3 * rng.normal(size=150)), task="regression", name="line")
    updown = from_arrays(X, np.where(X[:, 0] > 0, "up", "down"), name="updown")
    quiet = {"models": ["logreg"], "progress": False, "log": lambda _: None}
    raw = accuracy.run_accuracy([line, updown], **quiet)
    scaled = accuracy.run_accuracy([line, updown], scale_target=True, **quiet)
    assert list(scaled["dataset"]) == ["line_scaled_y", "updown"]  # classification targets are left alone
    np.testing.assert_allclose(scaled["score"], raw["score"], rtol=1e-6)  # R² does not see the scaling
    data = accuracy._scaled_target(line)
    assert abs(data.y_train.mean()) < 1e-5 and abs(data.y_train.std() - 1) < 1e-5
