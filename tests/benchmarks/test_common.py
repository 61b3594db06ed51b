"""The shared measurement helpers: writers, the resumable result file, statistics, metrics, tables."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from benchmarks import _common as common

COLUMNS = {"method": str, "seed": int, "score": float, "note": str}


def _results(path: Path) -> common.ResultFile:
    return common.ResultFile(path, COLUMNS, key=("method", "seed"), what="test results")


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    common.write_json(path, {"x": 1, "path": tmp_path})
    assert json.loads(path.read_text()) == {"x": 1, "path": str(tmp_path)}
    common.atomic_write(path, b"bytes")
    assert path.read_bytes() == b"bytes"
    common.atomic_write(path, lambda fh: torch.save({"w": torch.ones(2)}, fh))
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_write_csv_orders_columns(tmp_path: Path) -> None:
    common.write_csv(tmp_path / "t.csv", [{"b": 1, "a": 2.5}], columns=["a", "b"])
    assert (tmp_path / "t.csv").read_text() == "a,b\n2.5,1\n"


def test_result_file_round_trips_and_resumes(tmp_path: Path) -> None:
    results = _results(tmp_path / "r.csv")
    assert results.read() == []
    row = results.append({"method": "shap, kernel", "seed": np.int64(3), "score": np.float32(0.1)})
    # What append returns is what a resumed run reads: types parsed, missing columns None.
    assert row == {"method": "shap, kernel", "seed": 3, "score": float(np.float32(0.1)), "note": None}
    results.append({"method": "random", "seed": 0, "score": 1 / 3, "note": "x"})
    again = _results(tmp_path / "r.csv").read()
    assert [r["line"] for r in again] == [2, 3]
    assert again[1]["score"] == 1 / 3  # floats are written exactly
    assert {results.key_of(r) for r in again} == {("shap, kernel", 3), ("random", 0)}
    assert list(results.frame().columns) == list(COLUMNS)
    with pytest.raises(ValueError, match="columns"):
        results.append({"method": "m", "seed": 1, "extra": 2})


def test_result_file_drops_a_torn_last_line_and_rejects_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    results = _results(path)
    results.append({"method": "a", "seed": 0, "score": 0.5})
    with open(path, "a") as fh:
        fh.write("b,1,0.")  # a kill in the middle of a write
    with pytest.warns(UserWarning, match="unterminated last line"):
        assert len(results.read()) == 1
    assert path.read_text() == "method,seed,score,note\na,0,0.5,\n"  # the torn part is cut off
    path.write_text("method,seed,score,note\na,zero,0.5,\n")
    with pytest.raises(ValueError, match=r"r.csv, line 2: column 'seed' does not parse"):
        results.read()
    path.write_text("method,seed,score,note\na,0,0.5,\na,0,0.7,\n")
    with pytest.raises(ValueError, match=r"line 3: the same cell .* as line 2"):
        results.read()
    path.write_text("dataset,seed\n")
    with pytest.raises(ValueError, match="not a file of test results"):
        results.read()


def test_result_file_validate_hook(tmp_path: Path) -> None:
    def positive(row: dict) -> None:
        if row["score"] < 0:
            raise ValueError("score must be >= 0")

    results = common.ResultFile(tmp_path / "r.csv", COLUMNS, key=("method",), validate=positive)
    with pytest.raises(ValueError, match="score must be >= 0"):
        results.append({"method": "a", "seed": 0, "score": -1.0})


def test_mean_std_is_the_sample_std() -> None:
    assert common.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    mean, std = common.mean_std([0.25])
    assert mean == 0.25 and math.isnan(std)
    assert common.format_mean_std([0.25]) == "0.250"  # one repeat: a plain number
    assert common.format_mean_std([1.0, 2.0, 3.0], digits=2) == "2.00 ± 1.00"
    assert common.format_mean_std([]) == ""


def test_spearman_rows_is_scipys_per_row() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    b[1] = a[1] ** 3  # same order: 1
    a[2] = 1.0  # constant: NaN
    got = common.spearman_rows(a, b)
    assert got[1] == pytest.approx(1.0) and math.isnan(got[2])
    for i in (0, 3, 4):
        assert got[i] == pytest.approx(spearmanr(a[i], b[i]).statistic)


def test_attribution_metrics_by_hand() -> None:
    truth = np.array([[3.0, -2.0, 1.0, 0.5], [1.0, 2.0, 3.0, 4.0]])
    same = common.attribution_metrics(truth, truth)
    assert same == pytest.approx({"rel_l2": 0.0, "spearman": 1.0, "top3": 1.0})
    reversed_rank = truth[:, ::-1].copy()
    m = common.attribution_metrics(reversed_rank, truth)
    # Row 1: ranks (2,3,1,4) against (4,1,3,2): -3/5; row 2 fully reversed: -1. Mean -0.8.
    assert m["spearman"] == pytest.approx(-0.8)
    # top-3 by |value|: row 1 {3,1,2} vs {0,1,2}; row 2 {0,1,2} vs {3,2,1}: 2/3 each.
    assert m["top3"] == pytest.approx(2 / 3)
    assert m["rel_l2"] == pytest.approx(np.linalg.norm(reversed_rank - truth) / np.linalg.norm(truth))
    with pytest.raises(ValueError, match="shape"):
        common.attribution_metrics(truth[:, :3], truth)


def test_counting_model_counts_forward_rows() -> None:
    model = common.CountingModel(torch.nn.Linear(3, 2).eval())
    assert not model.training
    model(torch.zeros(4, 3))
    model(torch.zeros(5, 3)).sum().backward()
    assert model.rows == 9


def test_format_table_and_headers() -> None:
    import pandas as pd

    text = common.format_table(pd.DataFrame({"method": ["a", "b"], "auc": [0.123456, None]}))
    lines = text.splitlines()
    assert lines[0].split("|")[1:3] == [" method ", " auc    "]
    assert "0.1235" in lines[2] and lines[3].split("|")[2].strip() == ""
    assert common.format_table([]) == "(no rows)"
    assert common.better("area", "lower") == "area (lower is better)"
    with pytest.raises(ValueError, match="direction"):
        common.better("area", "down")


def test_comma_separated() -> None:
    parse = common.comma_separated(int, minimum=1)
    assert parse("64, 256,") == [64, 256]
    for bad in ("", "1,x", "0,4"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    assert common.comma_separated(float)("0.1,0.5") == [0.1, 0.5]


def test_figure_saves_and_closes(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    with common.figure(tmp_path / "p.png", 1, 2, figsize=(4, 2)) as (fig, axes):
        axes[0].plot([0, 1], [1, 0])
    assert (tmp_path / "p.png").stat().st_size > 0
    assert not plt.fignum_exists(fig.number)


def test_exit_status_reports_what_was_written_or_one_error_line(capsys) -> None:
    assert common.exit_status(lambda: "out/a.csv, b.png") == 0
    assert capsys.readouterr().out == "\nwrote out/a.csv, b.png\n"

    def fails() -> str:
        raise ValueError("no such dataset 'x'")

    assert common.exit_status(fails) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: no such dataset 'x'\n" and "wrote" not in captured.out

    def breaks() -> str:
        raise KeyError("a bug, not a user error")

    with pytest.raises(KeyError):  # only the errors named are reported as one line; bugs keep their traceback
        common.exit_status(breaks)
    assert common.exit_status(breaks, errors=(KeyError,)) == 2


def test_every_registry_method_pickles() -> None:
    """Dask ships method specs to its workers by pickling them: every entry of the registry must survive."""
    import pickle

    from benchmarks.methods import get_method, list_methods

    for name in list_methods():
        spec = get_method(name)
        assert pickle.loads(pickle.dumps(spec)).name == spec.name
