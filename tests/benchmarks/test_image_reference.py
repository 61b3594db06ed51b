"""Tests for benchmarks.image_reference: the background share, ROAD through Quantus, the whole run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.image_reference import background_share, main


def test_background_share_is_the_share_of_abs_values_on_background_pixels() -> None:
    values = np.array([[[1.0, -3.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    background = np.array([[[True, True], [False, False]], [[True, False], [False, False]]])
    np.testing.assert_allclose(background_share(values, background), [0.5, 0.0])  # (1 + 3) / 8; no mass


def test_image_reference_trains_both_references_and_reports(tmp_path, capsys, idx_block_images) -> None:
    folder = idx_block_images("blocks", size=8, n_classes=2, n_train=48, n_test=16)
    out = tmp_path / "out"
    argv = [
        "--dataset",
        str(folder),
        "--out",
        str(out),
        "--max-train",
        "48",
        "--epochs",
        "2",
        "--n-explain",
        "8",
        "--stages",
        '[{"out_channels": 4, "hidden": [8]}, {"out_channels": 4, "dilation": 2, "hidden": [8]}]',
    ]
    assert main(argv) == 0
    report = json.loads((out / "image_reference.json").read_text())
    rows = {r["reference"]: r for r in report["rows"]}
    assert set(rows) == {"mean", "min"}
    for rule, row in rows.items():
        trained = json.loads((out / rule / "result.json").read_text())
        assert row["test_accuracy"] == trained["test_accuracy"] and trained["reference"] == rule
        assert (
            0.0
            <= row["background_share_p10"]
            <= row["background_share_median"]
            <= row["background_share_p90"]
            <= 1
        )
        for kind in ("morf", "lerf", "random"):
            assert set(row["curves"][kind]) == {str(p) for p in range(5, 100, 10)}  # JSON keys
            assert 0.0 <= row[f"road_{kind}"] <= 1.0
    lit = 8 / 64  # one 2x4 block per image
    assert report["settings"]["raw_zero_pixel_fraction"] == pytest.approx(1 - lit)
    assert (out / "image_reference.csv").exists() and (out / "image_reference.png").exists()
    assert "road_morf (lower is better)" in capsys.readouterr().out
    # A rerun reuses the finished training runs (their result.json is not rewritten).
    stamp = (out / "min" / "result.json").stat().st_mtime_ns
    assert main(argv) == 0 and (out / "min" / "result.json").stat().st_mtime_ns == stamp
