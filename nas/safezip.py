"""Extracting a zip that came from elsewhere (a phone, a colleague) without trusting its member names.

A member named `../x` or `/etc/x` (zip-slip) would land outside the folder it is extracted to;
links could do the same later. Every member is checked before anything is written.
"""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from nas.errors import UserError


def _check_member(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]) or not name.strip("/"):
        raise UserError(f"{archive}: member {info.filename!r} escapes the archive folder; refusing to extract")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UserError(f"{archive}: member {info.filename!r} is a symbolic link; refusing to extract")
    return path


def safe_extract(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract `archive` into `dest` after checking every member stays inside it; the extracted files."""
    archive, dest = Path(archive), Path(dest)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [(info, _check_member(archive, info)) for info in zf.infolist()]
            root = dest.resolve()
            written = []
            for info, rel in members:
                target = (root / Path(*rel.parts)).resolve()
                if root != target and root not in target.parents:
                    raise UserError(f"{archive}: member {info.filename!r} escapes the archive folder; "
                                    "refusing to extract")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                written.append(target)
            return written
    except zipfile.BadZipFile as exc:
        raise UserError(f"{archive}: not a valid zip file ({exc})") from None
    except FileNotFoundError:
        raise UserError(f"{archive}: file not found") from None
