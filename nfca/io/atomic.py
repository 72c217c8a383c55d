"""One way to write a file: to a temporary name in its folder, then renamed into place.

A run that stops half-way never leaves a half-written file, and every file written ends up with
the same permissions (0644: the owner writes, everyone reads), whatever the writer's umask or
temporary-file defaults. Used by every package (nfca, feeders, market_bridge); imports nothing
heavy, so figures and tables can both use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nfca.errors import OutputError

FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; move it onto `target` (mode 0644) only if the
    block succeeds. The temporary path does not exist on entry (some writers, GeoPackage,
    refuse an existing empty file). Raises OutputError naming the file if it cannot be written."""
    target = Path(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=target.suffix)
    except OSError as exc:
        raise OutputError(f"{target}: cannot be written ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot be written ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(target: Path | str, data: bytes) -> Path:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: Path | str, text: str) -> Path:
    """Write `text` (UTF-8, newlines as given) to `target` atomically."""
    return write_bytes(target, text.encode("utf-8"))
