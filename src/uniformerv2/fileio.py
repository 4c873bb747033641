"""Writing files so that a crash never leaves a half-written one: ``atomic_write``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path, write) -> Path:
    """Write through ``write(tmp_path)`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    A reader sees the old file or the new one, never a partial one. The file gets the usual mode of a new
    file (0666 & ~umask), not the private mode of temporary files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
