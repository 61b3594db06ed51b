"""The accuracy benchmark: real training through the estimators and skorch, resumable cells, skip reasons."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import accuracy
from benchmarks.models import ModelConfig, build_model


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
    argv = ["--datasets", "wine,diabetes", "--models", "gam,deep,mlp,logreg,hgb,vision", "--out", str(out)]
    assert accuracy.main(argv) == 0
    cells = accuracy.cell_file(out / "cells.csv").read()
    assert len(cells) == 12
    scored = [c for c in cells if c["score"] is not None]
    assert {c["metric"] for c in scored} == {"accuracy", "r2"}
    wine = {c["model"]: c["score"] for c in scored if c["dataset"] == "wine"}
    assert wine["logreg"] > 0.9 and wine["hgb"] > 0.8 and 0.0 <= wine["gam"] <= 1.0
    assert {c["model"] for c in cells if c.get("skipped")} == {"vision"}
    mlp = next(c for c in scored if c["model"] == "mlp" and c["dataset"] == "wine")
    deep = next(c for c in scored if c["model"] == "deep" and c["dataset"] == "wine")
    assert abs(mlp["params"] - deep["params"]) / deep["params"] < 0.05  # "an MLP of similar size"
    printed = capsys.readouterr().out
    assert "deep - mlp (pts)" in printed and "n/a" in printed
    for name in ("accuracy.csv", "accuracy.json", "accuracy.png"):
        assert (out / name).stat().st_size > 0

    # A second call with the same cells trains nothing; a new seed adds only its own cells.
    assert accuracy.main(argv) == 0
    assert len((out / "cells.csv").read_text().splitlines()) == 1 + 12
    assert accuracy.main([*argv[:3], "logreg", "--out", str(out), "--seeds", "0,1"]) == 0
    assert len((out / "cells.csv").read_text().splitlines()) == 1 + 14


def test_unknown_names_are_rejected(tmp_path) -> None:
    with pytest.raises(SystemExit):
        accuracy.main(["--datasets", "iris", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        accuracy.main(["--models", "svm", "--out", str(tmp_path)])


def test_vision_cell_on_digits_trains_a_vision_shapnet(monkeypatch) -> None:
    from shapnet.datasets import load_dataset

    ds = load_dataset("digits", random_state=0)
    small = type(ds)(**{**ds.__dict__, "X_train": ds.X_train[:200], "y_train": ds.y_train[:200],
                        "X_test": ds.X_test[:100], "y_test": ds.y_test[:100]})
    monkeypatch.setattr(accuracy, "VISION_EPOCHS", 1)
    torch.manual_seed(0)
    row = accuracy.run_cell(small, "vision", 0)
    assert row["model"] == "vision" and row["epochs"] == 1 and row["params"] > 0
    assert 0.0 <= row["score"] <= 1.0 and np.isfinite(row["seconds"])
