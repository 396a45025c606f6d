"""The file format of networks and checkpoints: magic (8 bytes), format version and header
length (``<IQ``), a JSON header, raw little-endian arrays one after the other, and the
SHA-256 of all of that; written atomically (temporary file + rename)."""
import json
import struct

import numpy as np

from ._files import atomic_write

_FRAME = struct.Struct("<IQ")


def sha256(data):
    import hashlib   # here, not at import: it loads OpenSSL's libcrypto (3.5 MB of RSS)
    return hashlib.sha256(data).digest()


def write(path, magic, version, header, arrays=()):
    """Write the header (a JSON-able dict) and the arrays' raw bytes (little-endian)."""
    head = json.dumps(header).encode()
    parts = [magic, _FRAME.pack(version, len(head)), head]
    for a in arrays:
        a = np.asarray(a)
        parts.append(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    data = b"".join(parts)
    atomic_write(path, data + sha256(data))


def read(path, magic, versions, what):
    """(version, header dict, payload bytes) of a file written by ``write``; ValueError for
    a foreign, truncated or corrupt file, or a version not in ``versions``."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < len(magic) + _FRAME.size + 32 or not data.startswith(magic):
        raise ValueError(f"{path}: not a fastbp {what} file")
    if sha256(data[:-32]) != data[-32:]:
        raise ValueError(f"{path}: checksum mismatch (file truncated or corrupt)")
    version, hlen = _FRAME.unpack_from(data, len(magic))
    if version not in versions:
        raise ValueError(f"{path}: format version {version} is not supported "
                         f"(this fastbp reads version {', '.join(map(str, versions))})")
    start = len(magic) + _FRAME.size
    try:
        header = json.loads(data[start:start + hlen])
    except ValueError as e:
        raise ValueError(f"{path}: invalid header ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: invalid header (not a mapping)")
    return version, header, data[start + hlen:-32]


def split(path, payload, specs):
    """The arrays of ``payload`` given [(dtype, size), ...] in order (native byte order)."""
    out, off = [], 0
    for dtype, size in specs:
        dt = np.dtype(dtype).newbyteorder("<")
        n = int(size) * dt.itemsize
        if off + n > len(payload):
            raise ValueError(f"{path}: the array block is shorter than the header says")
        out.append(np.frombuffer(payload, dtype=dt, count=int(size), offset=off)
                   .astype(np.dtype(dtype).newbyteorder("="), copy=True))
        off += n
    if off != len(payload):
        raise ValueError(f"{path}: the array block is longer than the header says")
    return out
