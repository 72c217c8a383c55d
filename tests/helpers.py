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
