"""Fixtures: the small feeders of tests/feeder_texts.py written to a temporary folder, and the
IEEE European LV feeder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.feeder_texts import IEEE_EULV, four_wire_kron_text, four_wire_text, three_wire_text, write_dss


@pytest.fixture
def kron_feeder(tmp_path: Path) -> Path:
    return write_dss(tmp_path, four_wire_kron_text())


@pytest.fixture
def it_feeder(tmp_path: Path) -> Path:
    return write_dss(tmp_path, three_wire_text())


@pytest.fixture
def four_wire_feeder(tmp_path: Path) -> Path:
    return write_dss(tmp_path, four_wire_text())


@pytest.fixture
def ieee_eulv() -> Path:
    return IEEE_EULV
