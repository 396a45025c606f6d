"""Atomic file writes shared by Network.save and the command line."""
import os
import stat

_TMP_PREFIX, _TMP_SUFFIX = ".fastbp-", ".tmp"
_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
          | getattr(os, "O_BINARY", 0))


def _create_temporary(folder):
    """``(fd, path)`` of a new, empty file in ``folder``.

    Created with mode 0o666 like ``open(path, "w")``, so the kernel applies the umask (and
    a default ACL of the folder) itself: no ``os.umask`` round trip, which would not be
    thread-safe. ``tempfile.mkstemp`` would make it 0600 whatever the umask.
    """
    for _ in range(100):
        tmp = os.path.join(folder, f"{_TMP_PREFIX}{os.urandom(8).hex()}{_TMP_SUFFIX}")
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:   # pragma: no cover - 64 random bits collided
            continue
    raise FileExistsError(f"{folder}: could not create a temporary file")  # pragma: no cover


def atomic_write(path, data):
    """Write bytes to path via a temporary file in the same folder, fsync and rename: a
    reader sees the old file or the new one, never a partial write.

    A new file gets the permissions a plain ``open(path, "w")`` would give it (0666 less
    the umask); a file that is replaced keeps its permission bits.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(path)
        mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    fd, tmp = _create_temporary(folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                if hasattr(os, "fchmod"):
                    os.fchmod(f.fileno(), mode)
                else:   # pragma: no cover - Windows before Python 3.13
                    os.chmod(tmp, mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
