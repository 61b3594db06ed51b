"""python -m benchmarks sparsity on a small table of its own: rows, files and resumption."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.sparsity import main


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 6))
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    frame["colour"] = rng.choice(["red", "green"], size=160)
    frame["label"] = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    path = tmp_path_factory.mktemp("data") / "toy.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_sweep_writes_every_cell_and_resumes(table: str, tmp_path) -> None:
    out = tmp_path / "out"
    argv = ["--dataset", table, "--l1", "0,0.3", "--thresholds", "none,0.2", "--epochs", "2", "--repeats", "1",
            "--batch-size", "32", "--out", str(out)]
    assert main(argv) == 0
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 4
    assert set(cells.l1) == {0.0, 0.3} and set(cells.threshold) == {-1.0, 0.2}
    unpruned = cells[cells.threshold < 0]
    assert (unpruned.rel_error == 0).all() and (unpruned.skipped < cells[cells.threshold > 0].skipped.max()).all()
    assert (cells.efficiency_error < 1e-4).all()
    assert {"skipped_l0", "skipped_l1", "explain_speedup", "score"} <= set(cells.columns)
    assert (out / "sparsity.png").stat().st_size > 0 and (out / "results.json").exists()
    # The profile lists each kernel call of one explanation per cell. Threshold pruning runs inside the layer
    # kernels, so no cell calls the pruning kernel, and pruning leaves fewer busy pairs in the later layers.
    profile = pd.read_csv(out / "profile.csv")
    assert set(profile.kernel) == {"relu_modules_forward"}
    assert len(profile) == 4 * profile.call.nunique() and (profile.ms >= 0).all()
    busy = profile.groupby(["l1", "threshold"]).busy_pairs.sum()
    assert busy[(0.3, 0.2)] < busy[(0.3, -1.0)]
    before = (out / "cells.csv").read_text()
    assert main(argv) == 0  # everything is done: nothing is recomputed or duplicated
    assert (out / "cells.csv").read_text() == before


def test_unknown_dataset_leaves_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "no_such_set", "--out", str(out)])
    assert exit_info.value.code == 2
    assert not out.exists()
    assert "error:" in capsys.readouterr().err
