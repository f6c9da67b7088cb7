"""Probe packs: measuring a device's table where the device is (`nas latency pack` / `import`).

A pack is a zip of one static ONNX model per table entry (rebuilt from the entry's op, args and
input shapes), a manifest, a standalone runner (`probe_runner.py`) and a README. The runner's
results.csv, imported against the same table, becomes that device's *measured* table: the keys
and unit descriptions come from the table the pack was made from, the timings from the phone.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.atomic import atomic_write
from nas.errors import UserError
from nas.safezip import safe_extract
from predictors.latency import litert
from predictors.latency.build import needed_units
from predictors.latency.measure import overhead_model
from predictors.latency.table import RUNTIME_NAMES, Entry, LatencyTable, Runtime
from predictors.latency.unit_export import entry_unit, unit_onnx

PACK_SCHEMA = "hybrid-nas/probe-pack/v1"
OVERHEAD_KEY = "__overhead__"
COLUMNS = ("key", "median_us", "p10_us", "p90_us", "runs")
DATA = Path(__file__).parent / "data"
README = {"onnxruntime": "probe_README.md", "litert": "probe_README_litert.md"}  # the pack's README.md, per runtime


def select_keys(table: LatencyTable, resolutions: Iterable[int] | None = None, limit: int | None = None) -> list[str]:
    """Table keys to pack: all, or those the space and zoo need at `resolutions`; at most `limit`."""
    keys = sorted(table.entries)
    if resolutions:
        wanted = needed_units(resolutions)
        keys = [k for k in keys if k in wanted]
    return keys[:limit] if limit is not None else keys


@dataclass
class PackReport:
    path: Path
    models: int
    bytes: int


def write_pack(table: LatencyTable, out: str | Path, keys: list[str],
               progress: Callable[[int, int], None] | None = None, runtime: Runtime = "onnxruntime") -> PackReport:
    """Write the probe zip for `keys` of `table` atomically: ONNX units, or (`runtime="litert"`)
    .tflite units converted as the LiteRT builder converts them (channel-last edges)."""
    if not keys:
        raise UserError(f"{table.label} table: no entries to pack at the resolutions asked for")
    models = []
    ext, export = ("tflite", litert.unit_tflite) if runtime == "litert" else ("onnx", unit_onnx)

    def writer(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"overhead.{ext}", litert.overhead_tflite() if runtime == "litert" else overhead_model())
            for i, key in enumerate(keys):
                entry = table.entries[key]
                name = f"models/{i:05d}.{ext}"
                zf.writestr(name, export(entry_unit(entry)))
                models.append({"key": key, "file": name, "inputs": [[1, *s] for s in entry.inputs if s is not None]})
                if progress:
                    progress(i + 1, len(keys))
            manifest = {"schema": PACK_SCHEMA, "device": table.device, "from_kind": table.kind, "runtime": runtime,
                        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        "overhead": {"key": OVERHEAD_KEY, "file": f"overhead.{ext}", "inputs": [[1, 1]]},
                        "models": models}
            zf.writestr("manifest.json", json.dumps(manifest, indent=1))
            zf.writestr("runner.py", (Path(__file__).parent / "probe_runner.py").read_text(encoding="utf-8"))
            readme = (DATA / README[runtime]).read_text(encoding="utf-8")
            zf.writestr("README.md", readme.format(device=table.device, count=len(keys), kind=table.kind,
                                                   resolutions=",".join(map(str, table.resolutions))))

    path = atomic_write(out, writer)
    return PackReport(path, len(models), path.stat().st_size)


# ------------------------------------------------------------------ import
@dataclass(frozen=True)
class Row:
    median_us: float
    p10_us: float
    p90_us: float
    runs: int


def read_results(path: Path, text: str | None = None) -> dict[str, Row]:
    """Parse and check results.csv: exact header, numeric positive fields, p10 <= median <= p90, unique keys."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a results CSV (binary or not UTF-8 text)") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if "\0" in text:
        raise UserError(f"{path}: not a results CSV (binary content)")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise UserError(f"{path}: not a results CSV ({exc})") from None
    if header is None or tuple(h.strip() for h in header) != COLUMNS:
        raise UserError(f"{path}: expected the header {','.join(COLUMNS)}, got {','.join(header or []) or 'nothing'}")
    rows: dict[str, Row] = {}
    for line, record in _records(reader, path):
        if not record or not any(f.strip() for f in record):
            continue
        if len(record) != len(COLUMNS):
            raise UserError(f"{path}: line {line}: expected {len(COLUMNS)} fields, got {len(record)}")
        key = record[0].strip()
        if not key:
            raise UserError(f"{path}: line {line}: empty key")
        if key in rows:
            raise UserError(f"{path}: line {line}: duplicate key {key}")
        try:
            median, p10, p90 = (float(v) for v in record[1:4])
            runs = int(record[4])
        except ValueError:
            raise UserError(f"{path}: line {line}: median_us, p10_us, p90_us must be numbers and runs an integer, "
                            f"got {','.join(record[1:])}") from None
        if not all(math.isfinite(v) and v > 0 for v in (median, p10, p90)) or runs < 1:
            raise UserError(f"{path}: line {line}: timings must be positive and finite and runs >= 1, "
                            f"got {','.join(record[1:])}")
        if not p10 <= median <= p90:
            raise UserError(f"{path}: line {line}: expected p10_us <= median_us <= p90_us, got {','.join(record[1:4])}")
        rows[key] = Row(median, p10, p90, runs)
    if OVERHEAD_KEY not in rows:
        raise UserError(f"{path}: no {OVERHEAD_KEY} row (the runner times overhead.onnx first); the per-call "
                        "overhead is needed to add unit timings")
    return rows


def _records(reader: Any, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of the CSV after its header; a malformed line is a UserError naming it."""
    line = 1
    while True:
        line += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UserError(f"{path}: line {line}: not CSV ({exc})") from None
        yield line, record


def load_results(source: str | Path) -> tuple[dict[str, Row], dict[str, Any], Path]:
    """(rows, run_info, path) from results.csv or a zip holding results.csv (and run_info.json)."""
    source = Path(source)
    if not source.is_file():
        raise UserError(f"{source}: file not found")
    if not zipfile.is_zipfile(source):
        with open(source, "rb") as fh:
            if fh.read(4) == b"PK\x03\x04" or source.suffix.lower() == ".zip":
                raise UserError(f"{source}: not a valid zip file (truncated or corrupt)")
        info_path = source.with_name("run_info.json")
        return read_results(source), _run_info(info_path) if info_path.is_file() else {}, source
    with tempfile.TemporaryDirectory() as tmp:
        files = safe_extract(source, tmp)
        found = [f for f in files if f.name == "results.csv"]
        if len(found) != 1:
            raise UserError(f"{source}: expected one results.csv in the zip, found {len(found)}")
        info = found[0].with_name("run_info.json")
        label = Path(f"{source}:{found[0].relative_to(Path(tmp).resolve())}")
        try:
            text = found[0].read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{label}: not a results CSV (binary or not UTF-8 text)") from None
        return (read_results(label, text),
                _run_info(info) if info.is_file() else {}, label)


def _run_info(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"{path}: unreadable run_info.json ({exc})") from None
    return data if isinstance(data, dict) else {}


@dataclass
class ImportReport:
    table: LatencyTable
    imported: int
    unknown: list[str] = field(default_factory=list)  # in the CSV, not in the reference table
    missing: list[str] = field(default_factory=list)  # in the reference table, not in the CSV


def measured_table(rows: dict[str, Row], info: dict[str, Any], reference: LatencyTable, device: str) -> ImportReport:
    """The measured `device` table of the CSV rows whose keys `reference` describes."""
    entries = {}
    for key, row in rows.items():
        ref = reference.entries.get(key)
        if ref is not None:
            entries[key] = Entry(us=row.median_us, p10=row.p10_us, p90=row.p90_us, n=row.runs, op=ref.op,
                                 args=ref.args, inputs=ref.inputs)
    stems = sorted({e.inputs[0][-1] for e in entries.values() if e.op == "stem" and e.inputs and e.inputs[0]})
    threads = info.get("threads", 1)
    runtime = info.get("runtime", "onnxruntime")  # packs from before the runtime axis: ONNX Runtime
    if runtime not in RUNTIME_NAMES:
        raise UserError(f"run_info.json: runtime: expected one of {', '.join(RUNTIME_NAMES)}, got {runtime!r}")
    table = LatencyTable(
        device=device, kind="measured", cpu=str(info.get("cpu", "unknown (imported without run_info.json)")),
        ort_version=str(info.get("ort_version", "unknown")), runtime=runtime,
        threads=threads if isinstance(threads, int) and threads >= 1 else 1,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), resolutions=stems,
        overhead_us=rows[OVERHEAD_KEY].median_us,
        validation=None, entries=entries)
    unknown = sorted(k for k in rows if k != OVERHEAD_KEY and k not in reference.entries)
    missing = sorted(k for k in reference.entries if k not in rows)
    return ImportReport(table, len(entries), unknown, missing)
