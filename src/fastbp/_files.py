"""Atomic file writes shared by Network.save and the command line."""
import os
import tempfile


def atomic_write(path, data):
    """Write bytes to path via a temporary file in the same folder, fsync and rename: a
    reader sees the old file or the new one, never a partial write."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
