"""`nas devices`: the latency tables this installation knows, where their numbers come from, how good they are."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nas.errors import UserError
from predictors.latency.devices import known_devices
from predictors.latency.table import RUNTIME_NAMES, load_table

VALIDATION_FIELDS = ("within_5pct", "within_10pct", "mape", "kendall_tau")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def describe(device: str, path: Path) -> dict[str, str]:
    """One row of the listing; a table that cannot be read gives a row holding its error."""
    row = {"device": device, "file": str(path)}
    try:
        table = load_table(path)
    except UserError as exc:
        return {**row, "kind": "error", "error": str(exc)}
    est = table.estimate or {}
    seen = table.provenance  # measured / calibrated here, another machine's, unverified, estimated
    if table.kind == "estimated":
        source = f"estimate: {est.get('fit', est.get('method', '?'))} from {est.get('from', {}).get('device', '?')}"
    elif table.kind == "calibrated":
        cal = table.calibration or {}
        source = f"{seen.label}: {cal.get('method')} x{cal.get('scale')}, {table.threads} thread(s)"
    else:
        where = table.machine.name if table.machine else f"{table.cpu}, ort {table.ort_version}, no speed probe"
        source = f"{where}, {table.threads} thread(s)"
    validation = table.validation or {}
    derived = sum(e.derived is not None for e in table.entries.values())
    return {**row, "kind": seen.tag, "label": table.kind_note, "source": source,
            "runtime": f"{RUNTIME_NAMES[table.runtime]} {table.ort_version}",
            "entries": str(len(table.entries)) + (f" ({derived} derived)" if derived else ""),
            "resolutions": ",".join(map(str, table.resolutions)) or "-",
            **{f: _fmt(validation.get(f)) for f in VALIDATION_FIELDS},
            "loo_error_pct": _fmt(est.get("error_pct")) if table.kind == "estimated" else "-"}


def run(args: argparse.Namespace) -> int:
    rows = [describe(d, p) for d, p in known_devices().items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no latency tables found; build one with `nas latency build --device host`")
        return 0
    out = Table(title="latency tables (estimated ones are not measurements; calibrated ones are another machine's "
                      "scaled to this one)")
    cols = ("device", "kind", "source", "runtime", "entries", "resolutions", *VALIDATION_FIELDS, "loo_error_pct")
    for col in cols:
        out.add_column(col.replace("_", " "), overflow="fold")
    for row in rows:
        if row["kind"] == "error":
            out.add_row(row["device"], "[red]error[/red]", row["error"], *["-"] * (len(cols) - 3))
        else:
            out.add_row(*(row[c] for c in cols))
    Console(width=200).print(out)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the devices with latency tables",
                       description="List known latency tables (user-built ones override shipped ones): kind, "
                                   "source, size, validation figures and, for estimated tables, their "
                                   "leave-one-out error.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
