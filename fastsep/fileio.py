"""Atomic file writing shared by every part of fastsep that writes results (audio, JSON, model weights).

A file is written under a hidden temporary name in its destination folder, flushed to disk, and renamed over the
destination, so a reader sees the old file or the complete new one, never a part. The temporary name carries the
writer's host and process id (``.tmp-<host>-<pid>-<random><suffix>``): a process killed with SIGKILL cannot remove
its own temporary file, and :func:`remove_stale_temps` can then tell a dead writer's leftovers (removed on the next
run) from a file another live process is still writing (left alone, e.g. another torchrun rank).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from typing import Any, Iterator, List, Union

__all__ = ["TEMP_PREFIX", "FILE_MODE", "DIR_MODE", "temp_path", "atomic_output", "atomic_write_bytes", "atomic_write_json",
           "is_temp_name", "remove_stale_temps"]

PathLike = Union[str, "os.PathLike[str]"]
TEMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create owner-only entries; outputs get the permissions a plain open() would have given them.
FILE_MODE = 0o666 & ~_read_umask()
DIR_MODE = 0o777 & ~_read_umask()


def _host() -> str:
    # Dashes separate the fields of the temporary name, so they are kept out of the host part.
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of fastsep's temporary names (never an input, never a result)."""
    return os.path.basename(name).startswith(TEMP_PREFIX)


def temp_path(folder: PathLike, suffix: str = "") -> str:
    """Create an empty file under a fresh temporary name in ``folder`` and return its path (the caller removes it)."""
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{_host()}-{os.getpid()}-", suffix=suffix, dir=os.fspath(folder))
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_output(path: PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path next to ``path``; on normal exit it is synced and renamed to ``path``, on an exception
    it is removed. The caller writes the temporary path (with any library: soundfile, scipy, open())."""
    path = os.fspath(path)
    tmp = temp_path(os.path.dirname(os.path.abspath(path)), suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # the writer may have closed its own handle without syncing
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module's notes)."""
    with atomic_output(path, ".tmp") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _writer_alive(name: str) -> bool:
    """Whether the process that made temporary file ``name`` may still be writing it."""
    parts = name[len(TEMP_PREFIX):].split("-")
    if len(parts) < 3 or not parts[1].isdigit():
        return False  # an older or foreign layout: no live writer can be named, treat as a leftover
    host, pid = parts[0], int(parts[1])
    if host != _host():
        return True  # another machine sharing the folder: cannot check, leave it alone
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temps(folder: PathLike, recursive: bool = True) -> List[str]:
    """Remove temporary files left in ``folder`` by writers that died (SIGKILL, power loss); returns their paths."""
    folder = os.fspath(folder)
    removed: List[str] = []
    if not os.path.isdir(folder):
        return removed
    walker = os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
    for root, _, files in walker:
        for name in files:
            if is_temp_name(name) and not _writer_alive(name):
                path = os.path.join(root, name)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(path)
    return removed
