"""What produced a set of results, recorded in summary.json so a planner can defend them: the
nfca version, the command line, every option, SHA-256 of each input file, the participant rule
and seed, and when."""

from __future__ import annotations

import hashlib
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path


def sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plain(x):
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return getattr(x, "value", x)


def provenance(inputs: list[Path | None], options: dict, participants: str, seed: int) -> dict:
    """The provenance record of a run (the files in `inputs` that exist are hashed)."""
    from nfca import __version__

    files = {str(p): sha256(Path(p)) for p in inputs if p is not None and Path(p).is_file()}
    rule = (
        "all end-users"
        if participants == "all"
        else (
            f"a random {participants} of the end-users (seed {seed})"
            if _is_number(participants)
            else f"listed in {participants}"
        )
    )
    return {
        "nfca_version": __version__,
        "command": shlex.join(["nfca", *sys.argv[1:]]) if Path(sys.argv[0]).name in ("nfca", "cli.py") else "",
        "options": {k: _plain(v) for k, v in options.items()},
        "inputs": files,
        "participants": {"rule": rule, "spec": participants, "seed": seed},
        "python": platform.python_version(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
