"""The consistency benchmark: the tabular λ sweep and the image mode against a permutation estimate."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from benchmarks import consistency
from shapnet import Stage, VisionShapNet, save


def test_tabular_sweep_writes_rows_with_ratios(tmp_path) -> None:
    out = tmp_path / "c"
    assert (
        consistency.main(
            ["--dataset", "wine", "--lambdas", "0,3", "--epochs", "2", "--max-test", "3", "--out", str(out)]
        )
        == 0
    )
    with open(out / "consistency_wine.csv") as fh:
        rows = list(csv.DictReader(fh))
    deep = [r for r in rows if r["model"] == "DeepShapNet"]
    assert [float(r["lambda"]) for r in deep] == [0.0, 3.0]
    assert float(deep[0]["time_ratio"]) == 1.0 and float(deep[1]["time_ratio"]) > 0
    assert all(0.0 <= float(r["relative_l2"]) for r in rows)
    gam = next(r for r in rows if r["model"] != "DeepShapNet")
    assert float(gam["relative_l2"]) < 1e-5  # an additive model is exact
    assert (out / "consistency_wine.png").stat().st_size > 0


def test_cli_on_a_csv_with_categoricals_and_a_string_target(mixed_csv, tmp_path, capsys) -> None:
    out = tmp_path / "c"
    assert (
        consistency.main(
            [
                "--dataset",
                str(mixed_csv),
                "--lambdas",
                "1",
                "--epochs",
                "1",
                "--max-test",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with open(out / "consistency_shop.csv") as fh:
        rows = list(csv.DictReader(fh))
    # λ = 0 (the baseline of the ratios) is added; the GAM is exact.
    assert [(r["model"], float(r["lambda"])) for r in rows] == [
        ("DeepShapNet", 0.0),
        ("DeepShapNet", 1.0),
        ("ShallowShapNet(gam)", 0.0),
    ]
    assert {r["metric"] for r in rows} == {"accuracy"} and float(rows[2]["relative_l2"]) < 1e-5
    assert "relative_l2 (lower is better)" in capsys.readouterr().out


def test_bad_inputs_fail_in_one_line_and_leave_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "c"
    for argv in (
        ["--dataset", str(tmp_path / "missing.csv")],
        ["--dataset", "digits"],
    ):  # digits: no checkpoints
        with pytest.raises(SystemExit) as exit_info:
            consistency.main([*argv, "--out", str(out)])
        assert exit_info.value.code == 2 and capsys.readouterr().err.startswith("error: ")
        assert not out.exists()


def test_permutation_estimate_is_efficient_and_reports_its_error() -> None:
    torch.manual_seed(0)
    model = VisionShapNet(1, 3, stages=[Stage(2, hidden=(4,))], image_size=(4, 4), readout_hidden=(4,)).eval()
    x = torch.randn(1, 4, 4)
    est, se = consistency.permutation_estimate(model, x, 1, 6, torch.Generator().manual_seed(0))
    with torch.no_grad():
        gap = model(x.unsqueeze(0))[0, 1] - model(torch.zeros(1, 1, 4, 4))[0, 1]
    # Every permutation walk telescopes to f(x) - f(r), so the estimate sums to it exactly.
    assert abs(float(est.sum() - gap)) < 1e-4
    assert est.shape == se.shape == (16,) and bool((se >= 0).all())


def test_image_mode_compares_checkpoints(tmp_path, monkeypatch) -> None:
    from shapnet.datasets import load_dataset

    torch.manual_seed(0)
    model = VisionShapNet(1, 10, stages=[Stage(2, hidden=(4,))], image_size=(8, 8), readout_hidden=(4,))
    save(model, tmp_path / "m.pt")
    out = tmp_path / "c"
    argv = [
        "--dataset",
        "digits",
        "--checkpoints",
        str(tmp_path / "m.pt"),
        "--n-images",
        "1",
        "--permutations",
        "4",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert consistency.main(argv) == 0
    row = json.loads((out / "consistency_digits.json").read_text())["rows"][0]
    assert row["relative_l2_vs_estimate"] >= row["relative_l2_debiased"] >= 0.0
    assert row["estimate_relative_se"] > 0.0
    assert load_dataset("digits").image_shape == (1, 8, 8)
