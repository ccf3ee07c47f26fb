"""Can this process write where the config points? If not: why, naming the path and the user id, and the fix.

Used at start (the SQLite file's folder, the outbox) and by readiness, so a folder the process
cannot write (a root-owned bind mount, a read-only file system, a file where a folder should be)
is reported as one clear line, never as a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class Problem(NamedTuple):
    reason: str  # "/app/data is not writable by uid 10001"
    fix: str     # "make /app/data writable by uid 10001 (...)"

    def __str__(self) -> str:
        return f"{self.reason}; fix: {self.fix}"


def running_as() -> str:
    """``uid 10001`` (with the gid when it differs): the identity file permissions are checked against."""
    uid, gid = os.geteuid(), os.getegid()
    return f"uid {uid}" if uid == gid else f"uid {uid} (gid {gid})"


def _not_writable(path: Path) -> Problem:
    uid, gid = os.geteuid(), os.getegid()
    return Problem(f"{path} is not writable by {running_as()}",
                   f"make {path} writable by uid {uid} (for a bind-mounted host folder: "
                   f"chown -R {uid}:{gid} <host folder>), or use a named volume")


def folder_problem(folder: str | Path, *, create: bool = False) -> Problem | None:
    """None when files can be created in ``folder``; otherwise why not, with the absolute path.

    ``create`` makes the folder (and its parents) when missing. No file is written, so this can
    run on every readiness probe. Root passes permission checks: as root only missing folders,
    files in the way and read-only file systems are found.
    """
    path = Path(os.path.abspath(folder))
    try:
        return _folder_problem(path, create)
    except OSError:  # an ancestor we may not even look into
        return _not_writable(_existing_ancestor(path))


def _folder_problem(path: Path, create: bool) -> Problem | None:
    if create and not path.exists():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            return _not_writable(_existing_ancestor(path))
        except OSError as e:
            return Problem(f"cannot create {path}: {e.strerror or type(e).__name__}",
                           "point the setting at a folder, or remove what is in the way")
    if not path.exists():
        return Problem(f"{path} does not exist", f"create {path}")
    if not path.is_dir():
        return Problem(f"{path} is not a folder", "point the setting at a folder")
    if not _can(path, os.W_OK | os.X_OK):
        if _read_only(path):
            return Problem(f"{path} is on a read-only file system", f"mount {path} read-write")
        return _not_writable(path)
    return None


def file_problem(path: str | Path) -> Problem | None:
    """Why a file we must open read-write (a SQLite database) cannot be, or None when it can."""
    file = Path(os.path.abspath(path))
    problem = folder_problem(file.parent, create=True)
    if problem is not None:
        return problem
    try:
        if file.is_dir():
            return Problem(f"{file} is a folder, not a file", "point the setting at a file name")
        if file.exists() and not _can(file, os.R_OK | os.W_OK):
            return _not_writable(file)
    except OSError:
        return _not_writable(file.parent)
    return None


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        try:
            if parent.exists():
                return parent
        except OSError:
            continue
    return Path("/")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _can(path: Path, mode: int) -> bool:
    """access(2) against the effective ids, which are the ones open() uses."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)
