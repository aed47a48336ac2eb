"""Files under ``var/`` belong to the service user alone.

The SQLite database holds every tenant's messages and API key hashes and the embedded Redis
append-only file holds queued task arguments, so neither may be readable by other local users:
directories are created (and corrected) as 0700, files as 0600, whatever the process umask.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077
"""umask for child processes that write under ``var/`` (the embedded redis-server)."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) owner-only; tighten it if it already exists.

    A shared directory (sticky, like ``/tmp``) or one another user owns is left as it is, with
    a warning: its mode is not relay's to change.
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & stat.S_ISVTX or info.st_uid != os.geteuid():
        if stat.S_IMODE(info.st_mode) & 0o077:
            log.warning(
                "directory is readable by other users and not relay's to change",
                extra={"action": "files.shared_dir", "path": str(path)},
            )
        return path
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and owner-only if missing; tighten it if it exists."""
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE)
    os.close(fd)
    os.chmod(path, FILE_MODE)
    return path


def tighten_tree(root: Path) -> None:
    """Make everything already under ``root`` owner-only (left open by an older version)."""
    if not root.is_dir():
        return
    os.chmod(root, DIR_MODE)
    for current, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(current) / name, DIR_MODE)
        for name in files:
            target = Path(current) / name
            if not target.is_symlink():
                os.chmod(target, FILE_MODE)


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and in-memory SQLite)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    name = url[len(prefix) :].split("?", 1)[0]
    if not name or name == ":memory:":
        return None
    return Path(name)
