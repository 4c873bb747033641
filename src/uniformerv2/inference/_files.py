"""Output files: written atomically (never half-written), with the usual permissions of a new file."""
from __future__ import annotations

import os
from pathlib import Path


def write_output(path, write) -> Path:
    """``write(tmp_path)`` then rename onto ``path`` (see ``weights.hub.atomic_write``); mode 0666 & ~umask
    (the temporary file is created private)."""
    from ..weights.hub import atomic_write

    path = Path(path)
    atomic_write(path, write)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path
