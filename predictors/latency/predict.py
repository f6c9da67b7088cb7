"""Predicted latency of an architecture from a device table.

prediction = scale * (sum over units of cost + one overhead) + per_unit * units + per_mb * weight MB + offset
cost       = max(entry - per-call overhead, weight bytes / bandwidth)

The per-call overhead is in every unit's measurement but paid once per inference; scale, per_unit,
offset and bandwidth are the table's validated correction (identity until `nas latency validate`
fits one; no bandwidth: no weight-read floor, `weights.py` says why there is one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nas.arch.schema import ArchConfig
from nas.blocks.units import arch_sections
from nas.errors import UserError
from predictors.latency.table import Entry, LatencyTable


@dataclass(frozen=True)
class Prediction:
    ms: float
    plain_ms: float  # before the correction
    device: str
    kind: str  # "measured" | "calibrated" | "estimated"
    sections: list[tuple[str, float, int]] = field(default_factory=list)  # (name, ms, units)
    error_pct: float | None = None  # estimated tables: their stated typical error
    pipeline_ms: float | None = None  # estimated from whole-pipeline figures: their fixed cost, not in `ms`
    table: LatencyTable | None = field(default=None, repr=False, compare=False)
    derived: int = 0  # units whose entry was derived, not timed on the table's machine (Entry.derived)

    @property
    def label(self) -> str:
        """'0.412 ms on host (measured on <other machine>)': the table's provenance, decided (and
        warned about) only when a prediction is shown, not for every one computed."""
        note = f" +/-{self.error_pct:.0f}%" if self.error_pct is not None else ""
        if self.pipeline_ms:
            note += f"; model only, a full app pipeline adds ~{self.pipeline_ms:.2f} ms"
        kind = self.table.provenance.label if self.table is not None else self.kind
        if self.derived:
            note += f"; {self.derived} unit(s) DERIVED from timed ones by a ratio measured elsewhere"
        return f"{self.ms:.3f} ms on {self.device} ({kind}{note})"


def floor_us(weight_bytes: int | None, bandwidth_gbs: float) -> float:
    """Microseconds to read `weight_bytes` at `bandwidth_gbs` GB/s (0 without a bandwidth or a count)."""
    if not bandwidth_gbs or weight_bytes is None:
        return 0.0
    return weight_bytes / (bandwidth_gbs * 1e3)


def unit_cost_us(entry: Entry, overhead_us: float, bandwidth_gbs: float) -> float:
    """What one unit adds to a network: its timing less the per-call overhead (below 0 for a unit
    faster than the overhead: kept as timed), raised to its weight-read floor where there is a bandwidth."""
    cost = entry.us - overhead_us
    return max(cost, floor_us(entry.weight_bytes, bandwidth_gbs)) if bandwidth_gbs else cost


def arch_entries(arch: ArchConfig, table: LatencyTable) -> list[tuple[str, list[Entry]]]:
    """The table's entry of every unit of `arch`, by section; a unit missing from the table is a
    UserError naming it."""
    found = []
    for name, units in arch_sections(arch):
        entries = [table.entries.get(u.key) for u in units]
        for unit, entry in zip(units, entries):
            if entry is None:
                raise UserError(
                    f"{table.label} table has no entry for unit {unit.key} (at {arch.resolution} px); add it with "
                    f"`nas latency build --device host --resolutions {arch.resolution}`")
        found.append((name, entries))
    return found


def predict(arch: ArchConfig, table: LatencyTable, breakdown: bool = False) -> Prediction:
    """Predicted latency of `arch` (`plain_ms`: the bare sum, before floor and correction)."""
    overhead = table.overhead_us
    c = table.correction
    plain, floored, sections, count, derived, weight_bytes = overhead, overhead, [], 0, 0, 0
    for name, entries in arch_entries(arch, table):
        count += len(entries)
        us = 0.0
        for entry in entries:
            plain += entry.us - overhead
            us += unit_cost_us(entry, overhead, c.bandwidth_gbs)
            derived += entry.derived is not None
            weight_bytes += entry.weight_bytes or 0
        floored += us
        if breakdown:
            sections.append((name, us / 1000, len(entries)))
    corrected = c.scale * floored + c.per_unit_us * count + c.per_mb_us * weight_bytes / 1e6 + c.offset_us
    estimate = table.estimate or {}
    return Prediction(corrected / 1000, plain / 1000, table.device, table.kind, sections,
                      estimate.get("error_pct"), estimate.get("pipeline_ms"), table, derived)
