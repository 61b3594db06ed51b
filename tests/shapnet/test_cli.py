"""Tests for shapnet.cli: the shared dataset options and clean failure of a CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from shapnet.cli import add_dataset_arguments, dataset_from_args, fail_cleanly, parse_class_names
from shapnet.datasets import ENV_VAR


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def parser(default: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tool")
    add_dataset_arguments(p, default=default)
    p.add_argument("--out", type=Path, required=True)
    return p


def tool(argv: list[str]) -> str:
    """A minimal CLI as the benchmarks write one: creates --out, loads data, writes a file."""
    args = parser().parse_args(argv)
    with fail_cleanly(args.out):
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cache").mkdir(exist_ok=True)
        ds = dataset_from_args(args, random_state=0)
        (args.out / "result.txt").write_text(ds.name)
        return ds.name


def write_csv(path: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    lines = ["size,colour,kind"]
    for i in range(n):
        lines.append(f"{rng.normal():.3f},{['red', 'blue'][i % 2]},{['cat', 'dog'][i % 3 == 0]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_options_and_defaults() -> None:
    args = parser().parse_args(["--dataset", "wine", "--out", "x"])
    assert (args.dataset, args.data_dir, args.label_column, args.task, args.class_names) == (
        "wine", None, None, "auto", None)
    assert parser(default="yeast").parse_args(["--out", "x"]).dataset == "yeast"
    with pytest.raises(SystemExit):
        parser().parse_args(["--out", "x"])  # --dataset required without a default
    with pytest.raises(SystemExit):
        parser().parse_args(["--dataset", "wine", "--task", "clustering", "--out", "x"])
    assert "registry name" in parser().format_help()


def test_csv_through_the_options(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "pets.csv")
    out = tmp_path / "run"
    assert tool(["--dataset", str(csv), "--out", str(out)]) == "pets"
    assert (out / "result.txt").read_text() == "pets"
    args = parser().parse_args(["--dataset", "pets.csv", "--data-dir", str(tmp_path),
                                "--label-column", "colour", "--class-names", "red,blue", "--out", str(out)])
    ds = dataset_from_args(args, max_train=10)
    assert ds.class_names == ["red", "blue"] and len(ds.X_train) == 10
    assert np.bincount(ds.y_test).tolist() == [5, 5]  # 20 red, 20 blue; stratified 25% test
    assert "kind=dog" in ds.feature_names and "size" in ds.feature_names
    args = parser().parse_args(["--dataset", str(csv), "--label-column", "size", "--out", str(out)])
    assert dataset_from_args(args).task == "regression"
    args = parser().parse_args(["--dataset", str(csv), "--task", "regression", "--out", str(out)])
    with pytest.raises(ValueError, match="regression needs a numeric target"):
        dataset_from_args(args)


def test_dataset_from_args_without_optional_options(tmp_path: Path) -> None:
    args = argparse.Namespace(dataset="wine")
    assert dataset_from_args(args, random_state=1).name == "wine"


def test_parse_class_names(tmp_path: Path) -> None:
    assert parse_class_names(None) is None
    assert parse_class_names("a, b ,c") == ["a", "b", "c"]
    f = tmp_path / "names.txt"
    f.write_text("zero, with comma\none\n\n")
    assert parse_class_names(str(f)) == ["zero, with comma", "one"]
    with pytest.raises(ValueError, match="--class-names"):
        parse_class_names("a,,b")


@pytest.mark.parametrize(
    ("dataset", "message"),
    [("nope", "error: Unknown dataset 'nope'; valid names: "),
     ("missing/table.csv", "error: no such file or folder: 'missing/table.csv'"),
     ("{tmp}/bad.xlsx", "error: {tmp}/bad.xlsx: unsupported file type .xlsx"),
     ("{tmp}/broken.npz", "error: {tmp}/broken.npz: cannot read it as .npz")],
)
def test_bad_dataset_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, dataset: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.xlsx").write_bytes(b"x")
    (tmp_path / "broken.npz").write_bytes(b"x")
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "results" / "run1"
    with pytest.raises(SystemExit) as exc:
        tool(["--dataset", dataset.format(tmp=tmp_path), "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path))
    assert err.count("\n") == 1 and "Traceback" not in err
    # Nothing left on disk: out (and only what the run created) removed.
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the created parent 'results' too


def test_created_parent_kept_when_another_run_uses_it(tmp_path: Path) -> None:
    out = tmp_path / "results" / "run1"
    with pytest.raises(SystemExit), fail_cleanly(out):
        out.mkdir(parents=True)
        (tmp_path / "results" / "run2").mkdir()  # a concurrent run's folder appears meanwhile
        raise ValueError("bad")
    assert not out.exists() and (tmp_path / "results" / "run2").is_dir()


def test_existing_out_dir_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "earlier.csv").write_text("finished rows")
    with pytest.raises(SystemExit):
        tool(["--dataset", "nope", "--out", str(out)])
    assert (out / "earlier.csv").read_text() == "finished rows"
    assert capsys.readouterr().err.startswith("error: Unknown dataset")


def test_fail_cleanly_multiline_message_and_oserror(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc, fail_cleanly(None):
        raise TypeError("first line\n  second line")
    assert exc.value.code == 2 and capsys.readouterr().err == "error: first line second line\n"
    with pytest.raises(SystemExit), fail_cleanly(tmp_path / "o"):
        open(tmp_path / "absent.txt")  # noqa: SIM115
    assert capsys.readouterr().err == f"error: No such file or directory: {tmp_path / 'absent.txt'}\n"


def test_fail_cleanly_lets_bugs_through(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ZeroDivisionError), fail_cleanly(out):
        out.mkdir()
        1 / 0  # noqa: B018
    assert out.is_dir()  # kept for inspection
    with fail_cleanly(out):
        pass  # success: no exit


def test_fail_cleanly_as_decorator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deco"

    @fail_cleanly(out)
    def main() -> None:
        out.mkdir()
        raise ValueError("bad option --x 3: expected a positive integer")

    with pytest.raises(SystemExit):
        main()
    assert not out.exists()
    assert capsys.readouterr().err == "error: bad option --x 3: expected a positive integer\n"


def test_portable_writes_the_data_folder_as_the_variable(monkeypatch) -> None:
    from shapnet.cli import portable

    monkeypatch.setenv("SHAPNET_DATA", "/data/root/")
    payload = {"data_dir": "/data/root", "cmd": ["--data-dir /data/root/mnist", 3], "n": 1.5, "t": ("/data/root",)}
    assert portable(payload) == {
        "data_dir": "$SHAPNET_DATA",
        "cmd": ["--data-dir $SHAPNET_DATA/mnist", 3],
        "n": 1.5,
        "t": ("$SHAPNET_DATA",),
    }
    monkeypatch.delenv("SHAPNET_DATA")
    assert portable(payload) == payload
