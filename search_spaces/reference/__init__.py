"""The reference zoo: published models of the five families (and calibration CNNs) as ArchConfig
JSON files, each with a `meta.published` block of the paper's figures."""
from __future__ import annotations

from pathlib import Path

from nas.errors import UserError

ZOO_DIR = Path(__file__).parent


def zoo_names() -> list[str]:
    return sorted(p.stem for p in ZOO_DIR.glob("*.json"))


def zoo_path(name: str) -> Path:
    path = ZOO_DIR / f"{name}.json"
    if not path.is_file():
        raise UserError(f"{name}: not a file and not a reference model (known: {', '.join(zoo_names())})")
    return path
