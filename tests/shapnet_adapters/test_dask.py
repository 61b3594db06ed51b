"""Batch explanation on real Dask: the CLI on a 2-worker LocalCluster, a killed worker, the lazy APIs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import shapnet
from shapnet import DeepShapNet, InputSpec, ShallowShapNet, Stage, VisionShapNet
from shapnet.explain import main as explain_main

dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
sdask = pytest.importorskip("shapnet_adapters.dask")

ROOT = Path(__file__).resolve().parents[2]
NUMERIC = ["age", "income", "hours", "score", "debt"]
SPEC = InputSpec(
    NUMERIC + ["colour=red", "colour=blue"],
    mean=[40.0, 3.0, 38.0, 0.5, 1.0, 0.0, 0.0],
    scale=[12.0, 2.0, 8.0, 0.25, 3.0, 1.0, 1.0],
    output_names=["no", "yes"],
)


def make_table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(NUMERIC))) * SPEC.scale[:5] + SPEC.mean[:5], columns=NUMERIC)
    frame["colour"] = rng.choice(["red", "blue", "green"], size=n)  # green: unseen in training, no indicator
    frame.insert(0, "id", np.arange(n) * 10 + 7)
    frame["note"] = "unused"
    return frame


def make_model(dtype: torch.dtype = torch.float32) -> DeepShapNet:
    torch.manual_seed(0)
    return DeepShapNet(len(SPEC.feature_names), 2, channels=4, hidden=(8,),
                       reference=torch.full((7,), 0.1)).to(dtype).eval()


def expected(model: shapnet.ShapNet, frame: pd.DataFrame) -> shapnet.ShapleyExplanation:
    dtype = next(model.parameters()).dtype
    with torch.inference_mode():
        return model.explain(torch.as_tensor(SPEC.transform(frame), dtype=dtype))


def assert_matches(out: pd.DataFrame, expl: shapnet.ShapleyExplanation, atol: float) -> None:
    values = out[[f"shap[{f}, {o}]" for f in SPEC.feature_names for o in ("no", "yes")]].to_numpy()
    np.testing.assert_allclose(values.reshape(-1, 7, 2), expl.values.numpy(), rtol=0, atol=atol)
    for name, expect in (("prediction", expl.predictions), ("base_value", expl.base_values)):
        got = out[[f"{name}[no]", f"{name}[yes]"]].to_numpy()
        np.testing.assert_allclose(got, expect.numpy(), rtol=0, atol=atol)


@pytest.fixture
def files(tmp_path: Path) -> dict:
    model = make_model()
    shapnet.save(model, tmp_path / "model.pt", inputs=SPEC)
    frame = make_table(600)
    frame.to_parquet(tmp_path / "rows.parquet", row_group_size=50)  # 12 partitions at a small blocksize
    return {"model": model, "frame": frame, "model_path": str(tmp_path / "model.pt"),
            "input": str(tmp_path / "rows.parquet"), "out": str(tmp_path / "explained")}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster


def read_output(folder: str) -> pd.DataFrame:
    return pd.read_parquet(folder).sort_values("id").reset_index(drop=True)


def test_cli_on_a_two_worker_local_cluster_matches_model_explain(files: dict, cluster) -> None:
    # The module's 2-worker LocalCluster (--scheduler): starting a second cluster here would double the cost.
    command = [sys.executable, "-m", "shapnet.explain", "--model", files["model_path"],
               "--input", files["input"], "--output", files["out"], "--key-columns", "id",
               "--scheduler", cluster.scheduler_address, "--blocksize", "1", "--no-progress"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["workers"] == 2 and summary["rows"] == 600 and summary["partitions"] == 12
    out = read_output(files["out"])
    assert list(out.columns[:5]) == ["id", "prediction[no]", "prediction[yes]", "base_value[no]",
                                     "base_value[yes]"]
    assert out.shape == (600, 5 + 7 * 2)
    np.testing.assert_array_equal(out["id"], files["frame"]["id"])
    assert_matches(out, expected(files["model"], files["frame"]), atol=1e-5)
    # Resumable: a lost part is the only one written again, with the same numbers.
    os.remove(os.path.join(files["out"], "part-00003.parquet"))
    result = explain_main(["--model", files["model_path"], "--input", files["input"],
                           "--output", files["out"],
                           "--key-columns", "id", "--blocksize", "1", "--no-progress",
                           "--scheduler", cluster.scheduler_address])
    assert result["partitions_this_run"] == 1 and result["rows"] == 50
    pd.testing.assert_frame_equal(read_output(files["out"]), out)


def test_a_worker_killed_mid_run_still_completes(files: dict, cluster) -> None:
    killed: list[int] = []

    def kill_a_worker(index: int, client: distributed.Client) -> None:
        if killed:
            return
        written = len([n for n in os.listdir(files["out"]) if n.endswith(".parquet")])
        assert written < 12, "the run finished before the kill; make the partitions slower"
        pid = next(iter(client.run(os.getpid).values()))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    with distributed.Client(cluster.scheduler_address) as client:
        before = set(client.scheduler_info()["workers"])
    result = sdask.explain_files(files["model_path"], files["input"], files["out"], key_columns=["id"],
                                 scheduler=cluster.scheduler_address, blocksize=1, batch_size=2,
                                 progress=False, on_partition=kill_a_worker, log=lambda _: None)
    assert killed and result["rows"] == 600
    with distributed.Client(cluster.scheduler_address) as client:
        assert set(client.scheduler_info()["workers"]) != before  # the nanny replaced the killed worker
    assert_matches(read_output(files["out"]), expected(files["model"], files["frame"]), atol=1e-5)


def test_the_model_is_shipped_once_per_worker_not_per_partition(files: dict, cluster) -> None:
    df = dd.from_pandas(files["frame"], npartitions=12)
    explained = sdask.explain_dataframe(files["model"], df, inputs=SPEC, key_columns=["id"])
    with distributed.Client(cluster.scheduler_address) as client:
        before = client.run(sdask.models_loaded)
        out = explained.compute()
        after = client.run(sdask.models_loaded)
    loads = [after[w] - before.get(w, 0) for w in after]
    # Shipped per partition, the 12 partitions would load 12 copies. Once per worker loads one per worker; a
    # worker that receives the model key again from a peer (work stealing moves tasks with their data) may
    # deserialise one more, so allow up to two per worker: still far below one per partition.
    assert 1 <= sum(loads) <= 2 * len(loads) < 12, loads
    assert_matches(out.sort_values("id"), expected(files["model"], files["frame"]), atol=1e-5)


def test_dataframe_api_is_lazy_and_matches_model_explain() -> None:
    model = make_model(torch.float64)
    frame = make_table(203)
    df = dd.from_pandas(frame, npartitions=4)
    explained = sdask.explain_dataframe(model, df, inputs=SPEC, key_columns=["id"], batch_size=16)
    assert isinstance(explained, dd.DataFrame) and explained.npartitions == 4
    assert list(explained.columns[:3]) == ["id", "prediction[no]", "prediction[yes]"]
    out = explained.compute(scheduler="threads")
    assert out["shap[age, yes]"].dtype == np.float64
    np.testing.assert_array_equal(out.index, frame.index)
    assert_matches(out, expected(model, frame), atol=1e-12)
    green = (frame["colour"] == "green").to_numpy()  # unseen category: both indicators 0
    assert np.allclose(SPEC.transform(frame)[green][:, 5:], 0.0)


def test_dataframe_api_without_a_spec_uses_columns_as_they_are() -> None:
    model = ShallowShapNet(3, 1, hidden=(4,)).double().eval()
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(50, 3)), columns=["a", "b", "c"])
    out = sdask.explain_dataframe(model, dd.from_pandas(frame, npartitions=3)).compute(scheduler="sync")
    expl = model.explain(torch.tensor(frame.to_numpy()))
    assert list(out.columns) == ["prediction[0]", "base_value[0]", "shap[a, 0]", "shap[b, 0]", "shap[c, 0]"]
    np.testing.assert_allclose(out.iloc[:, 2:].to_numpy(), expl.values.detach().numpy()[..., 0], atol=1e-12)


@pytest.mark.parametrize("kind", ["deep", "vision"])
def test_array_api_matches_model_explain(kind: str) -> None:
    torch.manual_seed(0)
    if kind == "deep":
        model = DeepShapNet(7, 3, channels=4, hidden=(8,)).double().eval()
        x = torch.randn(45, 7, dtype=torch.float64)
    else:
        model = VisionShapNet(2, 3, stages=[Stage(4, hidden=(8,))], image_size=(6, 6), readout_hidden=(8,),
                              reference=0.1).double().eval()
        x = torch.randn(45, 2, 6, 6, dtype=torch.float64)
    lazy = sdask.explain_array(model, da.from_array(x.numpy(), chunks=(7,) + x.shape[1:]), batch_size=5)
    assert all(isinstance(a, da.Array) for a in (lazy.values, lazy.base_values, lazy.predictions))
    values, bases, predictions = lazy.compute(scheduler="threads")
    with torch.inference_mode():
        expl = model.explain(x)
    assert values.shape == tuple(expl.values.shape)
    np.testing.assert_allclose(values, expl.values.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(bases, expl.base_values.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(predictions, expl.predictions.numpy(), rtol=0, atol=1e-12)


def test_wrong_shapes_and_types_are_named() -> None:
    model = make_model()
    with pytest.raises(ValueError, match=r"shape \(N, 7\).*got \(10, 6\)"):
        sdask.explain_array(model, da.zeros((10, 6)))
    with pytest.raises(TypeError, match="dask.array.from_array"):
        sdask.explain_array(model, np.zeros((10, 7)))
    with pytest.raises(TypeError, match="from_pandas"):
        sdask.explain_dataframe(model, make_table(5))
    with pytest.raises(ValueError, match="takes 7 input features but the input spec has 8"):
        sdask.explain_dataframe(model, dd.from_pandas(make_table(5), npartitions=1))
    with pytest.raises(ValueError, match="no column for 2 of the model's 7 features: 'colour=red'"):
        sdask.explain_dataframe(model, dd.from_pandas(make_table(5).drop(columns="colour"), npartitions=1),
                                inputs=SPEC)


def cli_error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        explain_main(list(argv) + ["--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_paths_fail_with_one_line(files: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--input", files["input"], "--output", files["out"]]
    assert "model 'nope.pt' does not exist" in cli_error(capsys, "--model", "nope.pt", *base)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    junk = str(tmp_path / "junk.pt")
    assert "not a readable shapnet checkpoint" in cli_error(capsys, "--model", junk, *base)
    model = ["--model", files["model_path"], "--output", files["out"]]
    assert "input 'missing.csv' does not exist" in cli_error(capsys, *model, "--input", "missing.csv")
    (tmp_path / "empty").mkdir()
    assert "holds no .csv or .parquet" in cli_error(capsys, *model, "--input", str(tmp_path / "empty"))
    make_table(5).drop(columns="age").to_csv(tmp_path / "short.csv", index=False)
    assert "no column for 1 of the model's 7 features: 'age'" in cli_error(
        capsys, *model, "--input", str(tmp_path / "short.csv"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    assert "is not a shapnet.explain output" in cli_error(
        capsys, "--model", files["model_path"], "--input", files["input"],
        "--output", str(tmp_path / "taken"))
    assert not os.path.exists(files["out"])  # nothing was created by the failed runs


def test_bad_values_in_a_partition_are_reported() -> None:
    frame = make_table(40)
    frame["income"] = frame["income"].astype(object)
    frame.loc[33, "income"] = "n/a"
    out = sdask.explain_dataframe(make_model(), dd.from_pandas(frame, npartitions=4), inputs=SPEC)
    with pytest.raises(ValueError, match="column 'income' must be numeric"):
        out.compute(scheduler="sync")


def test_importing_shapnet_and_its_command_loads_neither_dask_nor_the_adapters() -> None:
    code = ("import sys, shapnet, shapnet.explain; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('dask', 'distributed', 'shapnet_adapters')))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_a_model_trained_on_a_csv_explains_the_raw_csv(tmp_path: Path, cluster) -> None:
    from shapnet.training import main as train_main

    rng = np.random.default_rng(0)
    raw = pd.DataFrame({"x": rng.normal(3, 2, 120), "colour": rng.choice(["red", "blue", "green"], 120),
                        "n": rng.integers(0, 5, 120), "y": rng.integers(0, 2, 120)})
    raw.to_csv(tmp_path / "t.csv", index=False)
    # The label is the last column.
    train_main(["--dataset", str(tmp_path / "t.csv"), "--out", str(tmp_path / "run"),
                "--epochs", "1", "--threads", "1", "--progress", "none"])
    model_path = tmp_path / "run" / "model.pt"
    spec = InputSpec.from_checkpoint(model_path)
    assert spec.feature_names == ("x", "n", "colour=blue", "colour=green", "colour=red")
    result = explain_main(["--model", str(model_path), "--input", str(tmp_path / "t.csv"),
                           "--output", str(tmp_path / "explained"),
                           "--scheduler", cluster.scheduler_address, "--no-progress"])
    assert result["rows"] == 120
    out = pd.read_parquet(tmp_path / "explained")
    model = shapnet.load(model_path).eval()
    with torch.inference_mode():
        expl = model.explain(torch.as_tensor(spec.transform(raw), dtype=torch.float32))
    np.testing.assert_allclose(out["prediction[1]"], expl.predictions[:, 1].numpy(), atol=1e-5)
