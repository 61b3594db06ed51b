"""Every ```python block of the section "## Use with Captum, shap and Quantus" runs.

The section lives in README.md once the lead merges it there, and in docs/adapters.md until then: the
README wins when it has the heading.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Use with Captum, shap and Quantus"


def section_source() -> tuple[Path, str]:
    """The file holding the section, and the section's text (up to the next heading of level 1 or 2)."""
    for path in (ROOT / "README.md", ROOT / "docs" / "adapters.md"):
        if not path.exists():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        starts = [i for i, line in enumerate(lines) if line.rstrip() == HEADING]
        if not starts:
            continue
        section, in_fence = [], False
        for line in lines[starts[0] :]:
            if line.startswith("```"):
                in_fence = not in_fence
            # A "# comment" inside a code block is not a heading.
            elif not in_fence and section and re.match(r"#{1,2} ", line):
                break
            section.append(line)
        return path, "\n".join(section) + "\n"
    raise FileNotFoundError(f"neither README.md nor docs/adapters.md has the heading {HEADING!r}")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.DOTALL | re.MULTILINE)


SOURCE, SECTION = section_source()
BLOCKS = python_blocks(SECTION)


def test_section_has_snippets_for_each_adapter() -> None:
    code = "\n".join(BLOCKS)
    assert len(BLOCKS) >= 3
    for name in ("ShapNetAttribution", "ShapNetExplainer", "explain_func"):
        assert name in code, f"no snippet in {SOURCE.name} uses {name}"


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i}")
def test_snippet_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # snippets may write plots
    monkeypatch.setenv("MPLBACKEND", "Agg")
    code = compile(BLOCKS[index], f"{SOURCE.name}:python-block-{index}", "exec")
    try:
        exec(code, {"__name__": f"snippet_{index}"})  # a fresh namespace: each snippet stands alone
    finally:
        plt.close("all")
