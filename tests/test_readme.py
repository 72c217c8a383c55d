"""The README's Python example runs as written (a notebook user's first steps)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # the IEEE feeder end to end, every output
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "feeders").symlink_to(ROOT / "feeders")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)
    printed = capsys.readouterr().out
    assert printed.startswith("<Feeder ieee_eulv: 907 buses") and "<Study ieee_eulv: 28 of 55" in printed
    assert {p.name for p in scope["files"]} >= {"envelopes.csv", "summary.json", "report.html", "envelopes.gpkg"}
    names = [f.name for f in scope["study"].plot()]
    assert names == ["envelopes_import.png", "envelopes_export.png", "methods_compared.png", "map.png"]


def test_readme_documents_every_published_column():
    from nfca.io import schema

    text = (ROOT / "README.md").read_text()
    for c in (*schema.ENVELOPES, *schema.SET_SUMMARY):
        assert f"| `{c.name}` | {c.unit} | {c.description} |" in text, c.name


def test_readme_documents_every_shared_option():
    import dataclasses

    from cli import OutputArgs, StudyArgs

    section = (ROOT / "README.md").read_text().split("## Options", 1)[1].split("\n## ", 1)[0]
    for group in (StudyArgs, OutputArgs):
        for f in dataclasses.fields(group):
            option = {"as_json": "json"}.get(f.name, f.name).replace("_", "-")
            assert f"`--{option}" in section, f"--{option} is not in the README's Options section"
