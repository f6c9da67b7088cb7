"""Which table a device name means.

A table the user built or imported (`runs/latency/<device>.json`, or `$HYBRID_NAS_TABLES`) wins
over the one shipped in the package (`predictors/latency/tables/<device>.json`), so that
`nas latency build --device host` on a user's machine is what `--device host` then predicts.
"""
from __future__ import annotations

import os
from pathlib import Path

from nas.errors import ParameterError
from predictors.latency.table import load_table

SHIPPED = Path(__file__).parent / "tables"


def user_dir() -> Path:
    return Path(os.environ.get("HYBRID_NAS_TABLES", "runs/latency"))


def known_devices() -> dict[str, Path]:
    """Device name -> the table file it resolves to."""
    found: dict[str, Path] = {}
    for folder in (SHIPPED, user_dir()):  # later folders win
        if folder.is_dir():
            found.update({p.stem: p for p in sorted(folder.glob("*.json"))})
    return dict(sorted(found.items()))


def table_path(device: str) -> Path:
    """The table file of `device`; an unknown device is a UserError listing the known ones."""
    known = known_devices()
    if device not in known:
        names = ", ".join(known) or "none"
        raise ParameterError("device", f": unknown device {device!r} (known: {names}); build a table with "
                        "`nas latency build --device host`")
    return known[device]


def default_build_path(device: str) -> Path:
    return user_dir() / f"{device}.json"


def open_device_table(device: str | None, table: str | None = None):
    """(table, path) from a table file or a device name. Its provenance is decided now, before
    any long work (`machine.verdict`; the CLI prints its warning when the command ends)."""
    path = Path(table) if table else table_path(device or "host")
    loaded = load_table(path)
    loaded.provenance  # noqa: B018 - decides the label and prints its one warning line, if any
    return loaded, path
