"""Tests for shapnet.progress: plain lines when stderr is not a terminal."""

from __future__ import annotations

import io
import re
import time

import pytest

from shapnet.progress import PlainProgress, progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def percents(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"(\d+)%\|", text)]


def test_plain_lines_every_ten_percent(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(range(50), desc="cells", unit="cell")
    assert isinstance(bar, PlainProgress)  # pytest's captured stderr is not a terminal
    assert sum(1 for _ in bar) == 50
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    assert all(line.startswith("cells:") for line in lines)
    assert percents(err) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert lines[-1].split("|")[2].strip().startswith("50/50")
    assert "cell/s" in lines[-1] or "s/cell" in lines[-1]


def test_plain_lines_with_uneven_steps(capsys: pytest.CaptureFixture[str]) -> None:
    with progress(total=7, desc="train", unit="batch") as bar:
        for _ in range(7):
            bar.update(1)
        bar.set_postfix(loss=0.123456)
    err = capsys.readouterr().err
    # 7 steps: every step crosses another 10% (at least one line per 10%).
    assert len(err.splitlines()) == 1 + 7 + 1  # start, 7 updates, close (new postfix)
    assert err.splitlines()[-1].endswith("loss=0.1235]")


def test_plain_initial_and_big_updates(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(total=10, desc="roar cells", initial=4)
    bar.update(6)
    bar.close()
    bar.close()  # idempotent
    lines = capsys.readouterr().err.splitlines()
    assert percents("\n".join(lines)) == [40, 100]


def test_plain_time_based_lines(capsys: pytest.CaptureFixture[str]) -> None:
    # A single step longer than the interval still produces lines (timer thread).
    bar = progress(total=1000, desc="slow", interval=0.05)
    time.sleep(0.6)  # ~12 intervals; at least 2 timer lines even on a loaded machine
    bar.update(1)  # 0.1%: no 10% line
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 4 and all(line.startswith("slow:") for line in lines)
    assert lines[-1].split("|")[2].strip().startswith("1/1000")


def test_plain_without_total(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(desc="epochs", unit="epoch", interval=3600)
    bar.update(3)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [lines[0], lines[1]] and "3epoch" in lines[1].replace(" ", "")


def test_disable_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(range(5), disable=True)) == list(range(5))
    assert capsys.readouterr().err == ""


def test_write_and_file_argument() -> None:
    buf = io.StringIO()
    with progress(total=2, desc="x", file=buf) as bar:
        bar.write("a message")
        bar.update(2)
    lines = buf.getvalue().splitlines()
    assert lines[1] == "a message" and percents(buf.getvalue()) == [0, 100]


def test_terminal_gets_tqdm() -> None:
    from tqdm import tqdm

    tty = FakeTTY()
    bar = progress(range(3), desc="tty", file=tty, interval=1.0)
    assert isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2]
    assert "\r" in tty.getvalue()  # redrawn in place


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="interval"):
        PlainProgress(total=3, interval=0)
    with pytest.raises(ValueError, match="step_fraction"):
        PlainProgress(total=3, step_fraction=0)
    with pytest.raises(TypeError, match="no iterable"):
        iter(PlainProgress(total=3, disable=True)).__next__()
