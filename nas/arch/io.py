"""Reading and writing ArchConfig files. A reference-zoo name is accepted wherever a path is."""
from __future__ import annotations

import os
from pathlib import Path

from nas.arch.schema import ArchConfig, loads_arch
from nas.atomic import atomic_write_text
from nas.errors import UserError


def load_arch(ref: str | os.PathLike[str]) -> ArchConfig:
    """Load from a JSON path, or from the reference zoo by name (`repvit_m0_9`)."""
    path = Path(ref)
    if path.suffix != ".json" and not path.exists():
        from search_spaces.reference import zoo_path  # local import: the zoo depends on this module

        path = zoo_path(str(ref))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    return loads_arch(text, source=str(path))


def save_arch(arch: ArchConfig, path: str | os.PathLike[str]) -> Path:
    """Write the canonical form atomically."""
    return atomic_write_text(path, arch.to_json())
