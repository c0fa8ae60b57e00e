"""Reading a user's input files in bounded time and memory: regular files only (a FIFO, ``/dev/zero`` or
``/dev/urandom`` would block or never end), at most a given number of bytes. Errors are :class:`InputFileError`
(a ``ValueError``) whose text is meant for a user; the caller adds the file name."""

from __future__ import annotations

import os
import stat

from planner.model.errors import VplanError

__all__ = ["InputFileError", "MAX_INPUT_BYTES", "read_input_bytes", "read_input_text", "check_regular"]

#: The largest input file read (a scenario, an included model, a capture, a domain XML, a mapping file).
MAX_INPUT_BYTES = 64 * 1024 * 1024


class InputFileError(VplanError, ValueError):
    """A file that cannot be read as input; ``str()`` says why (without the file name)."""


def _size_text(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size >= 1024 * 1024 else f"{size} bytes"


def check_regular(path: str | os.PathLike) -> None:
    """Refuse what is not a regular file, without opening it (opening a FIFO for reading blocks)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputFileError("file not found") from None
    except OSError as exc:
        raise InputFileError(f"cannot read file: {exc.strerror or exc}") from None
    _refuse_kind(st.st_mode)


def _refuse_kind(mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise InputFileError("is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
        raise InputFileError(f"is {kind}, not a regular file")


def read_input_bytes(path: str | os.PathLike, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (else :class:`InputFileError`)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO does not wait for a writer
    except FileNotFoundError:
        raise InputFileError("file not found") from None
    except IsADirectoryError:
        raise InputFileError("is a directory, not a file") from None
    except OSError as exc:
        raise InputFileError(f"cannot read file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        _refuse_kind(st.st_mode)
        if st.st_size > limit:
            raise InputFileError(f"the file is {_size_text(st.st_size)}, more than the {_size_text(limit)} an input "
                                 "file may have")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # the file grew while being read
                raise InputFileError(f"the file is more than the {_size_text(limit)} an input file may have")
        return b"".join(chunks)
    except InputFileError:
        raise
    except OSError as exc:
        raise InputFileError(f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_input_text(path: str | os.PathLike, limit: int = MAX_INPUT_BYTES) -> str:
    """:func:`read_input_bytes` decoded as UTF-8 (a BOM is dropped)."""
    data = read_input_bytes(path, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError("cannot read file: not UTF-8 text") from None
