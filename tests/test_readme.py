"""Every ```python block of README.md runs (in order, in one namespace per section).

A block containing the comment ``# needs SHAPNET_DATA`` runs only when that directory exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _sections() -> list[tuple[str, list[str]]]:
    text = README.read_text()
    sections: list[tuple[str, list[str]]] = []
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        title = chunk.splitlines()[0].strip()
        blocks = re.findall(r"```python\n(.*?)```", chunk, flags=re.S)
        if blocks:
            sections.append((title, blocks))
    return sections


@pytest.mark.parametrize("title,blocks", _sections(), ids=[t for t, _ in _sections()])
def test_readme_section_runs(title: str, blocks: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    data = os.environ.get("SHAPNET_DATA", str(README.parents[1] / "shared" / "data"))
    for block in blocks:
        if "# needs SHAPNET_DATA" in block:
            if not Path(data).is_dir():
                pytest.skip("README block needs the real datasets (SHAPNET_DATA)")
            monkeypatch.setenv("SHAPNET_DATA", data)
        exec(compile(block, f"README.md [{title}]", "exec"), namespace)  # noqa: S102
