"""The faithfulness benchmark end to end at toy size, and its perturbation helpers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from benchmarks import faithfulness
from benchmarks.methods import DEFAULT_METHODS

FIELDS = ["method", "library", "status", *faithfulness.METRICS, "sec_per_sample", "budget", "reason"]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "faithfulness.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0]) == FIELDS
    return rows


def test_tabular_quick_uses_the_roar_method_set(tmp_path: Path) -> None:
    out = tmp_path / "bc"
    assert faithfulness.main(["--dataset", "breast_cancer", "--quick", "--out", str(out)]) == 0
    rows = _rows(out)
    assert [r["method"] for r in rows] == list(DEFAULT_METHODS)
    for r in rows:
        assert r["status"] == "ok", r
        for metric in ("infidelity", "sensitivity_max", "faithfulness_corr", "monotonicity_corr", "pixel_flipping"):
            assert math.isfinite(float(r[metric])), (r["method"], metric, r[metric])
        assert r["road_morf"] == r["road_lerf"] == "n/a (images only)"
        assert -1.0 <= float(r["faithfulness_corr"]) <= 1.0
    by = {r["method"]: r for r in rows}
    # ShapNet's own Shapley values track removals of its features better than a random ranking.
    assert float(by["shapnet"]["faithfulness_corr"]) > float(by["random"]["faithfulness_corr"])
    payload = json.loads((out / "faithfulness.json").read_text())
    assert payload["n_samples"] == 6 and payload["directions"]["infidelity"] == "lower"
    # The Quantus adapter and the registry's (Captum adapter) values are the same numbers.
    assert payload["checks"]["shapnet_quantus_vs_captum_max_abs_diff"] < 1e-6
    assert (out / "faithfulness.png").stat().st_size > 0


def test_images_quick_has_road_and_not_applicable_rows(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    argv = ["--dataset", "digits", "--quick", "--methods", "shapnet,random,deeplift", "--out", str(out)]
    assert faithfulness.main(argv) == 0
    by = {r["method"]: r for r in _rows(out)}
    assert list(by) == ["shapnet", "random", "deeplift"]
    for name in ("shapnet", "random"):
        for metric in faithfulness.METRICS:
            assert math.isfinite(float(by[name][metric])), (name, metric)
        assert 0.0 <= float(by[name]["road_morf"]) <= 1.0 and 0.0 <= float(by[name]["road_lerf"]) <= 1.0
    # DeepLift cannot act on a ShapNet's ReLUs: reported with the reason, not run.
    assert by["deeplift"]["status"] == "n/a" and "ReLU" in by["deeplift"]["reason"]
    assert all(by["deeplift"][m] == "n/a" for m in faithfulness.METRICS)


def test_reference_replacement_and_subset_removal() -> None:
    arr = np.arange(12, dtype=np.float32).reshape(2, 6)
    reference = -np.arange(6, dtype=np.float32)
    out = faithfulness.reference_replacement(arr, np.array([[0, 5], [2, 3]]), reference, perturb_baseline="black")
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
