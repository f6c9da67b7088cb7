"""The latency table file: a versioned JSON record of unit timings on one device.

A table says where its numbers come from (device, `measured`, `calibrated` or `estimated`, CPU
model, ONNX Runtime version, threads, date, and the fingerprint of the machine it describes with
its speed probe: `machine.py`, which also decides how outputs label a table), the runtime's
per-call overhead, the correction fitted by validation, and one entry per unit key. Entries carry
the unit's builder arguments and input shapes, so a table alone is enough to rebuild and re-measure
any unit (`nas latency pack`).

A build appends each finished entry to a journal next to the table (one fsynced JSON line), and
folds the journal into the table with an atomic rewrite now and then: a kill at any instant loses
no finished entry, and a torn last journal line is ignored.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_serializer

from nas.atomic import append_json_line, atomic_write_text, read_json_lines
from nas.errors import UserError
from predictors.latency.machine import Fingerprint, Verdict, cpu_model, verdict

SCHEMA = "hybrid-nas/latency-table/v1"
Runtime = Literal["onnxruntime", "litert"]
SCHEMA_VERSION = 1


class Entry(BaseModel):
    """One unit's timing in microseconds (median, 10th and 90th percentile of `n` runs)."""

    model_config = ConfigDict(extra="forbid")
    us: float = Field(ge=0)
    p10: float = Field(ge=0)
    p90: float = Field(ge=0)
    n: int = Field(ge=1)
    op: str
    args: dict[str, Any]
    inputs: list[list[int] | None]
    extrapolated: bool = Field(False, description="estimated tables: no calibration model has this kind of unit")
    retimed: bool = Field(False, description="timed twice (the first timing was noisy, or the build made two "
                                             "passes); the lower median kept")
    derived: dict[str, Any] | None = Field(
        None, description="not timed on the table's machine: derived from the timed entry `from` by a ratio "
                          "measured elsewhere (predictors/latency/derive.py says how); predictions using it say so")
    weight_bytes: int | None = Field(
        None, ge=0, description="bytes of the unit's tensors in deploy form (BNs folded, fp32): inside a network "
                                "a unit reads them from memory, not from the cache it kept warm when timed alone "
                                "(predictors/latency/weights.py)")

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: Any) -> dict[str, Any]:
        data = handler(self)  # an entry is written as before these fields existed while they are unset
        for name in ("derived", "weight_bytes"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class Correction(BaseModel):
    """measured end-to-end = scale * (sum of unit costs + one overhead) + per_unit_us * (number of
    units) + per_mb_us * (MB of weights) + offset_us, fitted by `nas latency validate` where the
    plain sum is biased. A unit's cost is its timing less the per-call overhead - or, with a
    bandwidth, at least the time to read its weights at `bandwidth_gbs`. Both weight terms are
    there because a unit timed alone in a loop finds its weights in cache, while inside a network
    the other units' weights have evicted them (docs/latency.md, Outliers). The per-unit term is
    what a network pays between its units and a unit timed alone does not (residual additions,
    layout changes, cold inputs): it matters for small nets."""

    model_config = ConfigDict(extra="forbid")
    scale: float = 1.0
    per_unit_us: float = 0.0
    offset_us: float = 0.0
    bandwidth_gbs: float = Field(0.0, ge=0, description="the weight-read floor's memory bandwidth; 0: no floor")
    per_mb_us: float = Field(0.0, description="added per MB (1e6 bytes) of the network's weights: in context a "
                                              "unit reads them from memory while it computes (weights.py)")
    fitted_on: int = 0
    note: str = "none fitted: prediction is the plain sum"

    @property
    def weight_note(self) -> str:
        """The weight terms in words, for outputs ('' without them): ', weight-read floor at 16 GB/s,
        +29.2 us per MB of weights'."""
        floor = f", weight-read floor at {self.bandwidth_gbs:g} GB/s" if self.bandwidth_gbs else ""
        return floor + (f", {self.per_mb_us:+.1f} us per MB of weights" if self.per_mb_us else "")


class LatencyTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_: Literal["hybrid-nas/latency-table/v1"] = Field(SCHEMA, alias="schema")
    device: str
    kind: Literal["measured", "calibrated", "estimated"]
    cpu: str
    ort_version: str = Field(description="the version of the table's runtime: ONNX Runtime's, or ai-edge-litert's "
                                         "for a LiteRT table (the name predates the runtime axis)")
    threads: int = Field(ge=1)
    created: str
    resolutions: list[int]
    overhead_us: float = Field(ge=0, description="median cost of one ONNX Runtime call on a trivial model")
    correction: Correction = Correction()
    estimate: dict[str, Any] | None = Field(None, description="estimated tables: method, sources, error bars")
    validation: dict[str, Any] | None = None
    machine: Fingerprint | None = Field(None, description="where it was measured (calibrated: the machine it "
                                                          "was fitted to), with its speed probe")
    calibration: dict[str, Any] | None = Field(None, description="calibrated tables: source machine and table, "
                                                                 "method, scales, fit error on the probe networks")
    runtime: Runtime = Field(
        "onnxruntime", description="the runtime the entries were timed with (an estimated table: the runtime of "
                                   "the host timings it scales)")
    entries: dict[str, Entry] = {}
    derivation: dict[str, Any] | None = Field(
        None, description="a table with entries derived from another runtime's table: the method, the source, the "
                          "per-op fits and their leave-one-out error on the timed units (cross_runtime.py)")
    unavailable: dict[str, str] = Field(
        {}, description="units the table's runtime could not run, with the reason (a LiteRT table: the converter "
                        "failed on them); a build does not retry them, and a derived entry may stand in")
    _path: Path | None = PrivateAttr(None)  # the file it was read from (warnings name it)
    _verdict: Verdict | None = PrivateAttr(None)  # decided once (machine.verdict)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), indent=1, sort_keys=True) + "\n"

    @property
    def provenance(self) -> Verdict:
        """Whose timings these are, as far as this machine can tell (`machine.verdict`)."""
        return verdict(self)

    @property
    def label(self) -> str:
        """How outputs name the table: 'pixel6 (estimated)', 'host (measured)', 'host (measured on
        AMD EPYC (2 cores, ort 1.32.0, probe 9.61 ms))', 'host (calibrated from ...)'."""
        return f"{self.device} ({self.provenance.label})"

    @property
    def kind_note(self) -> str:
        """What a search output says next to its latencies: the provenance label, or 'ESTIMATED
        ±11%' with the stated error (and ', model only' where a pipeline cost is kept apart)."""
        if self.kind != "estimated":
            return self.provenance.label
        est = self.estimate or {}
        return (f"ESTIMATED ±{est.get('error_pct', float('nan')):.0f}%"
                + (", model only" if est.get("pipeline_ms") else ""))


RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "litert": "LiteRT"}


def runtime_note(table: LatencyTable) -> str:
    """Which runtime a table's figures come from, for every output that shows one: 'ONNX Runtime
    1.32.0, 1 thread(s)'; an estimated table scales host timings to published figures of another
    runtime (the Pixel 6 ones are TFLite/LiteRT), and says both."""
    base = f"{RUNTIME_NAMES[table.runtime]} {table.ort_version}, {table.threads} thread(s)"
    if table.kind != "estimated":
        return base
    return f"scaled from host {base} timings to published {(table.estimate or {}).get('runtime', 'TFLite')} figures"


def runtime_info(threads: int, runtime: Runtime = "onnxruntime") -> dict[str, Any]:
    version = ort.__version__ if runtime == "onnxruntime" else litert_version()
    return {"cpu": cpu_model(), "ort_version": version, "threads": threads, "runtime": runtime}


def litert_version() -> str:
    """The LiteRT interpreter package's version (a LiteRT table records it where ORT's records ORT's)."""
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "not installed"


def new_table(device: str, kind: str, threads: int, resolutions: list[int], overhead_us: float,
              machine: Fingerprint | None = None, runtime: Runtime = "onnxruntime") -> LatencyTable:
    return LatencyTable(device=device, kind=kind, **runtime_info(threads, runtime), resolutions=sorted(resolutions),
                        overhead_us=overhead_us,
                        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), machine=machine)


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal.jsonl")


def load_table(path: str | os.PathLike[str], with_journal: bool = False) -> LatencyTable:
    """Read and check a table file; corrupt, truncated or newer-schema files are a UserError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: latency table not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read latency table ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a latency table (binary, not JSON text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}); the file is corrupt or "
                        "truncated, rebuild it with `nas latency build`") from None
    except RecursionError:
        raise UserError(f"{path}: not a latency table (JSON nested too deeply)") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a latency table object")
    schema = data.get("schema")
    if isinstance(schema, str) and schema.startswith("hybrid-nas/latency-table/v") and schema != SCHEMA:
        raise UserError(f"{path}: table schema {schema!r} is newer than this hybrid-nas reads ({SCHEMA}); "
                        "upgrade hybrid-nas")
    try:
        table = LatencyTable.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise UserError(f"{path}: {where}: {err['msg']}") from None
    if with_journal:
        entries, unavailable = read_journal(journal_path(path))
        table.entries.update(entries)
        table.unavailable.update(unavailable)
    table._path = path
    return table


def read_journal(path: Path) -> tuple[dict[str, Entry], dict[str, str]]:
    """Entries, and units found unavailable, appended by an interrupted build; a torn
    (half-written) line is skipped."""
    found: dict[str, Entry] = {}
    unavailable: dict[str, str] = {}
    for record in read_json_lines(path):
        try:
            if "unavailable" in record:
                unavailable[record["key"]] = str(record["unavailable"])
            else:
                found[record["key"]] = Entry.model_validate(record["entry"])
        except (KeyError, TypeError, ValidationError):
            continue
    return found, unavailable


def append_journal(path: Path, key: str, entry: Entry | str) -> None:
    """One finished unit: its timing, or why the runtime could not run it."""
    append_json_line(path, {"key": key, "entry": entry.model_dump()} if isinstance(entry, Entry)
                     else {"key": key, "unavailable": entry})


def save_table(table: LatencyTable, path: str | os.PathLike[str]) -> Path:
    """Atomic rewrite; the journal (now folded in) is removed afterwards."""
    path = atomic_write_text(path, table.to_json())
    journal_path(path).unlink(missing_ok=True)
    return path
