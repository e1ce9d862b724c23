"""Reading the files an operator names (config, secrets, certificates, tokens) safely.

Only regular files, opened without blocking and read up to a size cap: a FIFO with no writer,
``/dev/zero`` or a multi-gigabyte file given by mistake is an error with its name, never a
hang or a ``MemoryError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

# Far more than any config, secret, certificate bundle or token file needs.
MAX_FILE_BYTES = 4 * 1024 * 1024


class UnreadableFile(OSError):
    """A named file cannot be used; ``str()`` says why, with the file's name."""


def read_regular_file(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes."""
    try:
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise UnreadableFile(err.errno, err.strerror or str(err)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile("not a regular file")
        if info.st_size > limit:
            raise UnreadableFile(f"larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > limit:  # grew while we read
                raise UnreadableFile(f"larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


FileStamp = tuple[int, int, int, int]


def file_stamp(path: str) -> FileStamp | None:
    """What tells a file's new content apart: device, inode, change time, size (read through a
    symbolic link, so a mounted Secret's or ConfigMap's symlink swap counts); None if absent."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size


def read_text(path: str | Path, limit: int = MAX_FILE_BYTES) -> str:
    """:func:`read_regular_file` decoded as UTF-8 (``UnicodeDecodeError`` if it is not)."""
    return read_regular_file(path, limit).decode("utf-8")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader (node_exporter's textfile collector) sees the old file or the new one, never half.
    Only a regular file is replaced: a device, a FIFO, a directory or a symbolic link at
    ``path`` is refused (OSError), never turned into a regular file.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EEXIST, "exists and is not a regular file (left as it is)")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
