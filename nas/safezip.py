"""Extracting a zip that came from elsewhere (a phone, a colleague) without trusting its member names.

A member named `../x` or `/etc/x` (zip-slip) would land outside the folder it is extracted to;
links could do the same later. A small archive can also inflate to fill the disk (a zip bomb):
each member and the whole are capped. Every member is checked before anything is written, and
the caps are enforced again on the bytes actually inflated (a header can lie about sizes).
"""
from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from nas.errors import UserError

MAX_MEMBER_BYTES = 64 * 2**20  # a probe pack's results.csv is kilobytes; its largest unit model a few MB
MAX_TOTAL_BYTES = 512 * 2**20


def _member_too_big(archive: Path, name: str, size: int) -> UserError:
    return UserError(f"{archive}: member {name!r} inflates to {size / 2**20:.1f} MB, more than the "
                     f"{MAX_MEMBER_BYTES / 2**20:g} MB a member may; refusing to extract")


def _archive_too_big(archive: Path, name: str) -> UserError:
    return UserError(f"{archive}: members inflate to more than the {MAX_TOTAL_BYTES / 2**20:g} MB an archive "
                     f"may (at {name!r}); refusing to extract")


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
            total = 0
            for info, _ in members:
                if info.file_size > MAX_MEMBER_BYTES:
                    raise _member_too_big(archive, info.filename, info.file_size)
                total += info.file_size
                if total > MAX_TOTAL_BYTES:
                    raise _archive_too_big(archive, info.filename)
            root = dest.resolve()
            inflated = 0
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
                size = 0
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        size += len(chunk)
                        inflated += len(chunk)
                        if size > MAX_MEMBER_BYTES:
                            raise _member_too_big(archive, info.filename, size)
                        if inflated > MAX_TOTAL_BYTES:
                            raise _archive_too_big(archive, info.filename)
                        out.write(chunk)
                written.append(target)
            return written
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UserError(f"{archive}: not a valid zip file ({exc or type(exc).__name__})") from None
    except (NotImplementedError, RuntimeError) as exc:  # unsupported compression, encrypted members
        raise UserError(f"{archive}: cannot extract ({exc})") from None
    except FileNotFoundError:
        raise UserError(f"{archive}: file not found") from None
