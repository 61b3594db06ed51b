"""Every ```python block of README.md and docs/ runs on its own, and the docs hold no machine paths.

Each block gets a fresh namespace and an empty working directory, so a block that relies on an earlier one
fails here. A block containing the comment ``# needs SHAPNET_DATA`` runs only when the real datasets are
present (``$SHAPNET_DATA``, or ``../shared/data`` beside the repository).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DATA_MARK = "# needs SHAPNET_DATA"


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for i, block in enumerate(re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)):
            found.append((f"{page.relative_to(ROOT)}#{i}", block))
    return found


BLOCKS = _blocks()


@pytest.mark.parametrize("block", [b for _, b in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_code_block_runs_on_its_own(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    matplotlib.use("Agg")
    if DATA_MARK in block:
        data = os.environ.get("SHAPNET_DATA", str(ROOT.parent / "shared" / "data"))
        if not Path(data).is_dir():
            pytest.skip("this block needs the real datasets (SHAPNET_DATA)")
        monkeypatch.setenv("SHAPNET_DATA", data)
    exec(compile(block, "docs block", "exec"), {"__name__": "__docs__"})


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines; guides and results belong in docs/"
    first_blocks = [i for i, line in enumerate(lines) if line.startswith("```")][:4]
    assert [lines[i] for i in first_blocks] == ["```bash", "```", "```bash", "```"]
    install_and_run, install_and_test = lines[first_blocks[0] + 1], lines[first_blocks[2] + 1]
    assert "pip install" in install_and_run and "python -m benchmarks" in install_and_run
    assert "pip install" in install_and_test and "pytest" in install_and_test


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_no_machine_paths(page: Path) -> None:
    text = page.read_text()
    for pattern in (r"/work/", r"/home/\w+", r"/root/"):
        assert not re.search(pattern, text), f"{page.name} names a path of one machine ({pattern})"
