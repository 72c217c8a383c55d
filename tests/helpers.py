"""Helpers shared by tests: reading the CLI's stderr, and OpenDSS as an oracle."""

from __future__ import annotations

from pathlib import Path


def error_lines(stderr: str) -> str:
    """stderr without the progress lines the CLI prints in a log (`nfca: ...`, one per step)."""
    return "\n".join(line for line in stderr.strip().splitlines() if not line.startswith("nfca: "))


def opendss_redirect(master: Path) -> None:
    """The committed model straight into OpenDSS in the test process, as an oracle for the feeder
    builders' tests (nfca itself reads feeders through nfca.engine)."""
    import os

    import opendssdirect as dss

    cwd = os.getcwd()
    try:
        dss.Text.Command("Clear")
        dss.Text.Command("Set DefaultBaseFrequency=60")
        dss.Text.Command(f'Redirect "{master.resolve()}"')
    finally:
        os.chdir(cwd)


def report_data(page: Path) -> dict:
    """The data a report.html embeds and draws from (its charts' specs, its map)."""
    import json

    text = Path(page).read_text()
    return json.loads(text.split('id="nfca-data">', 1)[1].split("</script>", 1)[0])


def plotting_modules_after(args: list[str]):
    """Run the CLI with `args` in a fresh interpreter; the plotting libraries (matplotlib,
    geopandas) it imported, as printed: "[]" for none. The run must succeed (exit 0, or 8:
    `nfca activations`' policy not met, every output written)."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    assert e.code in (None, 0, 8), e.code\n"
        "print(sorted(m for m in ('matplotlib', 'geopandas') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().splitlines()[-1]
