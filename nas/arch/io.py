"""Reading and writing ArchConfig files (a reference-zoo name is resolved one layer up, by
`search_spaces.reference.resolve_arch`: the zoo is made of these files, not the other way round)."""
from __future__ import annotations

import os
from pathlib import Path

from nas.arch.schema import ArchConfig, loads_arch
from nas.atomic import atomic_write_text
from nas.errors import UserError

MAX_ARCH_BYTES = 16 * 2**20  # an ArchConfig is a few kB; more is not one (or is /dev/zero)


def load_arch(ref: str | os.PathLike[str]) -> ArchConfig:
    """Load an ArchConfig JSON file; anything else is a one-line UserError naming it."""
    path = Path(ref)
    try:
        # O_NONBLOCK only for the open: a FIFO nobody writes to then reads as empty instead of
        # hanging, while `<(cat a.json)` still blocks until its writer's data arrives
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_ARCH_BYTES + 1)
        if len(data) > MAX_ARCH_BYTES:
            raise UserError(f"{path}: larger than {MAX_ARCH_BYTES // 2**20} MB; not an architecture file")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected an architecture JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    return loads_arch(text, source=str(path))


def save_arch(arch: ArchConfig, path: str | os.PathLike[str]) -> Path:
    """Write the canonical form atomically."""
    return atomic_write_text(path, arch.to_json())
