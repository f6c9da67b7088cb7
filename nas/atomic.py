"""Crash-safe file writes: temp file in the same folder, fsync, rename.

Long jobs (LUT builds, training, search) checkpoint through these so a kill at any instant leaves
either the old file or the new one, never half of one. Outputs go only to regular files or new
paths: a rename would replace a device node (/dev/full), a FIFO or a socket with a plain file, so
those are refused, as are folders. Names that become path components (an arch's name, a study's)
must be plain file names: no separators, no `..`.
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.errors import UserError


def path_name_problem(name: str) -> str | None:
    """Why `name` cannot be used as one file or folder name inside an output folder (None if it can):
    a separator or `..` would put what is written under it somewhere else."""
    if "/" in name or "\\" in name:
        return f"{name!r} contains a path separator; a name must be a plain file name"
    if ".." in name or name == ".":
        return f"{name!r} contains '..' or is '.'; a name must be a plain file name"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r} contains control characters; a name must be a plain file name"
    return None


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _folder_problem(path: Path) -> str | None:
    """Why `path` cannot be (made) a writable folder, judged by its first existing ancestor; None if it can."""
    for part in (path, *path.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                return f"{part} is a file" if part.is_file() else f"{part} exists and is not a folder"
            if not os.access(part, os.W_OK | os.X_OK):
                return f"{part} is not writable"
            return _filesystem_problem(part)
    return None


def _filesystem_problem(folder: Path) -> str | None:
    """A read-only file system, or one that holds no files (/proc, /sys: no blocks, no inodes),
    where root's write access bits say nothing."""
    try:
        fs = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    if fs.f_flag & getattr(os, "ST_RDONLY", 1):
        return f"{folder} is on a read-only file system"
    if fs.f_blocks == 0 and fs.f_files == 0:
        return f"{folder} is on a pseudo file system that holds no files (as /proc and /sys)"
    return None


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """`path` if a file may be (re)written there: a new path or a regular file (a link is followed),
    in a folder that is or can be made. Nothing is created."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise UserError(f"{path}: cannot write there ({exc.strerror})") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise UserError(f"{path}: is {_kind(mode)}; outputs are written only to regular files or new paths")
    parent = path.parent if str(path.parent) else Path(".")
    problem = _folder_problem(parent)
    if problem:
        raise UserError(f"{path}: cannot create folder {parent}: {problem}")
    return path


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """`path` if it is a writable folder or could be created as one (nothing is created): checked
    before long work starts, so that it does not fail at its first checkpoint."""
    path = Path(path)
    problem = _folder_problem(path)
    if problem:
        raise UserError(f"{path}: cannot be a folder: {problem}")
    return path


def output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder `path` (and its parents) or say in one line why it cannot be one."""
    path = check_output_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create folder ({exc.strerror})") from None
    return path


def _check_writable_dir(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create folder {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"{path}: folder {parent} is not writable")


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    """Call `writer(tmp_path)` then atomically move the result to `path`."""
    path = check_output_file(path)
    _check_writable_dir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 would hide shipped files from other users
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def interrupted_writes(folder: Path) -> list[Path]:
    """The temp files that writes into `folder` left when killed before their rename (SIGKILL runs
    no cleanup): never a finished file, so a resumed job may remove them and treat them as absent."""
    return sorted(p for p in folder.glob(".*.tmp") if p.is_file())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def append_json_line(path: str | os.PathLike[str], record: Any) -> None:
    """Append one JSON line and fsync it: a journal of finished work that a kill cannot lose
    (at worst the line being written is torn, which `read_json_lines` skips). A torn last line
    left by an earlier kill is cut off first, so the new record is not glued to it and lost."""
    path = Path(path)
    if path.exists():
        with open(path, "r+b") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size:
                fh.seek(max(0, size - 1))
                if fh.read(1) != b"\n":
                    fh.seek(0)
                    data = fh.read()
                    fh.truncate(data.rfind(b"\n") + 1)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_json_lines(path: str | os.PathLike[str]) -> list[Any]:
    """The records of a JSON-lines journal (none if it does not exist); a torn line is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
