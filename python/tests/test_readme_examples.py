"""Every Python example of the READMEs runs as written (issue 15: examples must not rot)."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", ROOT / "python" / "README.md"]


def _blocks():
    for readme in READMES:
        text = readme.read_text(encoding="utf-8")
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            line = text.count("\n", 0, match.start()) + 1
            yield pytest.param(match.group(1), id=f"{readme.relative_to(ROOT)}:{line}")


@pytest.mark.parametrize("code", list(_blocks()))
def test_readme_example_runs(code, tmp_path, monkeypatch):
    pytest.importorskip("flask")
    # In a scratch directory: an example may write files (ConfigManager writes a default
    # configuration where none exists), and must not write them into the repository.
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<readme>", "exec"), {"__name__": "readme_example"})
