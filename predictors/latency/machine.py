"""Which machine a latency table was measured on, and whether it is the one at hand.

Why: a table's timings hold for the machine that took them. Issue 24 used the shipped `host`
table on another VM that reports the very same CPU string ("AMD EPYC") and ONNX Runtime version:
the table was off by up to 3x and still said `measured`, and nothing warned. Strings alone cannot
tell two such machines apart; their speed can. So a table records a `Fingerprint` of where it was
measured: the static identity (CPU model string, vendor/family/model/stepping, a hash of the CPU
flags, cache sizes, core count, ONNX Runtime version and build) and a **speed probe**: a few fixed
networks (`PROBES`, members of the hybrid space, built deterministically: no download) exported
as `nas export` does and timed end to end in interleaved passes, fresh sessions each, the lowest
pass median kept (load only ever adds time). The probe's stated noise is how well that lowest
figure repeats (the second-lowest pass against it), never under `NOISE_FLOOR_PCT` (the ±10% the
tables aim for: a machine closer than that is as good as the same one).

The rule, decided in one place (`verdict`; outputs take their label from it):

- estimated tables, and tables of a device other than `host` (an imported phone measurement),
  never claim to describe this machine: labelled by their kind, nothing checked;
- a `host` table (kind `measured` or `calibrated`) is **this machine's** when its static
  identity equals this machine's and its probe agrees with this machine's probe within the
  table's stated noise; label `measured` / `calibrated from <machine>`;
- it is **another machine's** when the identity differs or the probe disagrees: label `measured on
  <machine>` (`calibrated from <A> for <machine>`), and one warning line on stderr naming both
  machines and what to run (a CLI command prints it after its output, and drops it when it stops
  at bad input, whose contract is one error line: `held_warnings`);
- a `host` table **without a probe** (the shipped table, or one built before fingerprints) is
  another machine's if its CPU string or ORT version differ; if they match it is still
  **unverified** - matching strings are exactly the case issue 24 found 3x apart - labelled
  `measured elsewhere, unverified (...)` with the same one-line warning. Calibrating
  (`nas latency calibrate`) or building (`nas latency build`, which also gives a probe-less table
  of one's own a probe when it resumes it) writes a user table with a probe, which then wins
  over the shipped one (`devices.py`), and the warning stops.

This machine's probe is timed at most once per process and cached on disk (`cache_dir()`, keyed
by the static identity, thread count and boot; a day at most), so that every command and every
process of one session compares against the same figures; `nas latency build` and `calibrate`
time a fresh, full probe and refresh the cache.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from nas.arch.schema import ArchConfig, parse_arch
from nas.atomic import atomic_write_text
from nas.errors import UserError

if TYPE_CHECKING:
    from predictors.latency.table import LatencyTable

PROBE_PROTOCOL = "probe/v1"  # bump when PROBES or the way they are timed change: old probes then compare as absent
NOISE_FLOOR_PCT = 10.0
CACHE_SECONDS = 24 * 3600
REMEDY = ("run `nas latency calibrate --device host` (about a minute) or `nas latency build --device host` "
          "(the exact route, ~15 min)")


# ------------------------------------------------------------------ records
class ProbeTiming(BaseModel):
    """One probe network: its figure (lowest pass median, ms) and every pass's median."""

    model_config = ConfigDict(extra="forbid")
    arch_hash: str
    ms: float
    passes_ms: list[float]


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protocol: str = PROBE_PROTOCOL
    models: dict[str, ProbeTiming]
    noise_pct: float  # how far two probes of one machine may differ: the passes' spread, at least the floor
    disturbed: int = 0  # timings still disturbed by another job (CPU share) after their retries
    taken: str = ""

    def quick_ms(self) -> float:
        """Total of the quick probe networks: the figure machine names quote (every probe has them)."""
        return sum(t.ms for name, t in self.models.items() if name in QUICK_NAMES)


class Fingerprint(BaseModel):
    """Where a table was measured. Fields left empty are unknown (tables from before fingerprints)."""

    model_config = ConfigDict(extra="forbid")
    cpu: str
    vendor: str = ""
    family: str = ""
    model: str = ""
    stepping: str = ""
    flags_sha256: str = ""
    caches: dict[str, str] = {}
    cores: int = 0
    ort_version: str
    ort_build: str = ""
    threads: int = 1
    probe: Probe | None = None

    def identity(self) -> dict[str, Any]:
        """What must be equal on the same machine (not the probe, not the measuring thread count)."""
        return self.model_dump(exclude={"probe", "threads"})

    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.identity(), self.threads], sort_keys=True).encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """A short name that tells two machines apart even when their strings match (the probe)."""
        parts = [self.cpu] + ([f"{self.cores} cores"] if self.cores else []) + [f"ort {self.ort_version}"]
        parts.append(f"probe {self.probe.quick_ms():.2f} ms" if self.probe else "no speed probe")
        return ", ".join(parts)


# ------------------------------------------------------------------ static identity
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def _caches() -> dict[str, str]:
    """Cache sizes of CPU 0 by level and type (L1d, L1i, L2, L3), from sysfs; cpuinfo's figure otherwise."""
    found: dict[str, str] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        found[f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")] = size
    if not found and _cpuinfo().get("cache size"):
        found["cache"] = _cpuinfo()["cache size"]
    return found


def static_fingerprint(threads: int) -> Fingerprint:
    """This machine's identity, without a probe."""
    import onnxruntime as ort  # onnxruntime: ~0.1 s; every command loads this module (main), few fingerprint

    info = _cpuinfo()
    flags = info.get("flags", info.get("Features", ""))
    build = ort.get_build_info() if hasattr(ort, "get_build_info") else ""
    return Fingerprint(cpu=cpu_model(), vendor=info.get("vendor_id", ""), family=info.get("cpu family", ""),
                       model=info.get("model", ""), stepping=info.get("stepping", ""),
                       flags_sha256=hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16]
                       if flags else "", caches=_caches(), cores=os.cpu_count() or 0,
                       ort_version=ort.__version__, ort_build=build, threads=threads)


# ------------------------------------------------------------------ the speed probe
@dataclass(frozen=True)
class ProbeSpec:
    """A probe network: a fixed member of the hybrid space (so every full table covers its units and
    can predict it), drawn from `seed` with one family per stage, at `resolution`."""

    name: str
    resolution: int
    families: tuple[str, str, str, str]
    seed: int
    quick: bool  # timed by every identity check (small: seconds); the others only by build and calibrate

    def arch(self) -> ArchConfig:
        # torch: ~1.5 s, only to time the probes (`nas devices` reads tables without it)
        from search_spaces.hybrid import HybridSpace

        arch = HybridSpace(num_classes=1000).sample(random.Random(self.seed), families=self.families)
        return parse_arch({**arch.to_dict(), "name": f"probe-{self.name}", "resolution": self.resolution})


PROBES = (  # predicted 1.5-2 ms (quick) and 6-11 ms on the shipped table's machine
    ProbeSpec("conv-64", 64, ("mv2", "repvit", "repvit", "repvit"), 28, True),
    ProbeSpec("vit-64", 64, ("mv2", "mv2", "mobilevit", "levit"), 23, True),
    ProbeSpec("edge-64", 64, ("repvit", "mv2", "lgl", "former"), 4, True),
    ProbeSpec("conv-224", 224, ("mv2", "repvit", "repvit", "repvit"), 4, False),
    ProbeSpec("vit-160", 160, ("repvit", "mv2", "mobilevit", "levit"), 21, False),
    ProbeSpec("edge-224", 224, ("mv2", "repvit", "lgl", "former"), 21, False),
)
QUICK_NAMES = frozenset(p.name for p in PROBES if p.quick)


def take_probe(threads: int, quick: bool = True, passes: int = 3) -> Probe:
    """Time the probe networks here (the quick ones, or all), `passes` interleaved fresh-session passes."""
    # torch and onnxruntime: ~1.5 s, only to time the probes (`nas devices` reads tables without them)
    from nas.builder import build_model
    from predictors.latency.measure import DISTURBED_BELOW, RunPolicy, network_onnx, time_passes

    specs = [p for p in PROBES if p.quick or not quick]
    archs = {p.name: p.arch() for p in specs}
    models = {name: network_onnx(build_model(arch), arch.resolution) for name, arch in archs.items()}
    timings = time_passes(models, threads, RunPolicy(warmup=5, min_runs=15, min_seconds=0.1, max_runs=500), passes)
    found, spread, disturbed = {}, [0.0], 0
    for name, runs in timings.items():
        medians = [t.median_us / 1000 for t in runs]
        found[name] = ProbeTiming(arch_hash=archs[name].arch_hash(), ms=min(medians), passes_ms=medians)
        low = sorted(medians)
        spread.append(low[1] / low[0] - 1 if len(low) > 1 else 0.0)  # how well the lowest repeats (one bad pass aside)
        disturbed += sum(t.cpu_share < DISTURBED_BELOW for t in runs)
    return Probe(models=found, noise_pct=round(max(NOISE_FLOOR_PCT, 100 * max(spread)), 1), disturbed=disturbed,
                 taken=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def probe_ratio(theirs: Probe | None, mine: Probe | None) -> float | None:
    """Median of (this machine / theirs) over the probe networks both timed (same arch hash, same
    protocol); None when there are none to compare."""
    if theirs is None or mine is None or theirs.protocol != mine.protocol:
        return None
    ratios = sorted(m.ms / t.ms for name, t in theirs.models.items()
                    if (m := mine.models.get(name)) is not None and m.arch_hash == t.arch_hash and t.ms > 0)
    if not ratios:
        return None
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else math.sqrt(ratios[mid - 1] * ratios[mid])


# ------------------------------------------------------------------ this machine (memo + disk cache)
_MEMO: dict[str, Fingerprint] = {}


def cache_dir() -> Path:
    base = os.environ.get("HYBRID_NAS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
        / "hybrid-nas"
    return Path(base)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _read_cache(key: str) -> Fingerprint | None:
    try:
        record = json.loads((cache_dir() / f"probe-{key}.json").read_text())
        if record["boot_id"] != _boot_id() or time.time() - record["written"] > CACHE_SECONDS:
            return None
        return Fingerprint.model_validate(record["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None  # no cache, or an unreadable one: time the probe again


def remember(fingerprint: Fingerprint) -> None:
    """Make `fingerprint` (with its probe) this machine's, for this process and the disk cache."""
    key = fingerprint.digest()
    _MEMO[key] = fingerprint
    record = {"boot_id": _boot_id(), "written": time.time(), "fingerprint": fingerprint.model_dump()}
    try:
        atomic_write_text(cache_dir() / f"probe-{key}.json", json.dumps(record) + "\n")
    except Exception:  # noqa: BLE001 - a cache that cannot be written only costs a probe next time
        pass


def here(threads: int, fresh: bool = False, quick: bool = True, passes: int = 3) -> Fingerprint:
    """This machine's fingerprint with a speed probe at `threads` intra-op threads: remembered
    (this process, else the disk cache) unless `fresh`; otherwise timed now in `passes` passes (the
    quick probe takes seconds, the full one - `quick=False` - tens of seconds) and remembered."""
    static = static_fingerprint(threads)
    key = static.digest()
    if not fresh:
        known = _MEMO.get(key) or _read_cache(key)
        if known is not None and known.probe is not None:
            _MEMO[key] = known
            return known
    found = static.model_copy(update={"probe": take_probe(threads, quick=quick, passes=passes)})
    remember(found)
    return found


def _reprobed(mine: Fingerprint) -> Fingerprint:
    """`mine` with its probe timed once more and each network's lowest figure kept (load only ever
    adds time), remembered. Why: the same machine under load once read 1.24x slower than its own
    table's probe (CI, beyond that table's ±19%) and was called another machine."""
    assert mine.probe is not None
    again = take_probe(mine.threads, quick=True).models
    models = {name: t.model_copy(update={"ms": min(t.ms, again[name].ms), "passes_ms": t.passes_ms
                                         + again[name].passes_ms}) if name in again else t
              for name, t in mine.probe.models.items()}
    found = mine.model_copy(update={"probe": mine.probe.model_copy(update={"models": models})})
    remember(found)
    return found


# ------------------------------------------------------------------ the verdict
Where = Literal["here", "elsewhere", "unverified", "n/a"]


@dataclass(frozen=True)
class Verdict:
    """How every output names a table. `tag` is the closed vocabulary files record (best.json's
    latency_kind); `label` the words people read; `warning` the one stderr line, if any."""

    kind: str
    where: Where
    tag: str
    label: str
    warning: str | None = None
    ratio: float | None = None  # this machine's probe / the table's


_held: list[str] | None = None  # warnings held while a CLI command runs (`held_warnings`)


@contextlib.contextmanager
def held_warnings() -> Iterator[None]:
    """Hold table warnings while a command runs: printed after its output when it finishes (or
    fails with a bug), dropped when it stops at bad input - the CLI's contract is then one error
    line, and the table was not used. Outputs carry the table's label meanwhile."""
    global _held
    outer, held = _held, []
    _held = held
    try:
        yield
    except UserError:
        held.clear()
        raise
    finally:
        _held = outer
        for line in held:
            print(line, file=sys.stderr)


def verdict(table: LatencyTable) -> Verdict:
    """The table's verdict, decided once per table object (a command opens its table once); its
    warning (if any) goes to stderr then, or when the command ends (`held_warnings`): never none."""
    cached = table._verdict
    if cached is not None:
        return cached
    found = _decide(table)
    table._verdict = found
    if found.warning:
        if _held is None:
            print(found.warning, file=sys.stderr)
        else:
            _held.append(found.warning)
    return found


def origin(table: LatencyTable) -> Fingerprint:
    """The table's fingerprint, or what a table from before fingerprints says of its machine."""
    return table.machine or Fingerprint(cpu=table.cpu, ort_version=table.ort_version, threads=table.threads)


def _decide(table: LatencyTable) -> Verdict:
    if table.kind == "estimated" or table.device != "host":
        return Verdict(table.kind, "n/a", table.kind, table.kind)
    theirs = origin(table)
    mine = here(table.threads)
    compared = theirs.identity() if table.machine else {"cpu": theirs.cpu, "ort_version": theirs.ort_version}
    mine_id = mine.identity()
    diffs = [f"{k} {v!r} vs {mine_id[k]!r}" for k, v in compared.items() if v != mine_id[k]]
    ratio = probe_ratio(theirs.probe, mine.probe)
    noise = theirs.probe.noise_pct if theirs.probe else NOISE_FLOOR_PCT
    if not diffs and ratio is not None and ratio > 1 + noise / 100:
        mine = _reprobed(mine)  # slower than the table's machine: perhaps only busy when the probe was taken
        ratio = probe_ratio(theirs.probe, mine.probe)
    if ratio is not None and abs(math.log(ratio)) > math.log1p(noise / 100):
        diffs.append(f"this machine's probe takes {ratio:.2f}x its time, beyond the table's ±{noise:.0f}% noise")
    calibrated = table.kind == "calibrated"
    base = f"calibrated from {(table.calibration or {}).get('from', '?')}" if calibrated else "measured"
    where_from = f" ({table._path})" if table._path else ""
    if diffs:
        label = f"{base} for {theirs.name}" if calibrated else f"measured on {theirs.name}"
        warning = (f"warning: {table.device} table{where_from} is {label}, not this machine ({mine.name}): "
                   f"{'; '.join(diffs)}; its latencies may not hold here: {REMEDY}")
        return Verdict(table.kind, "elsewhere", f"{table.kind} on other machine", label, warning, ratio)
    if ratio is None:
        label = f"{base} elsewhere, unverified ({theirs.name})"
        warning = (f"warning: {table.device} table{where_from} is {label}: same CPU string and ORT version as this "
                   f"machine ({mine.name}), which does not make it this machine (issue 24: such machines differ "
                   f"up to 3x); {REMEDY}")
        return Verdict(table.kind, "unverified", f"{table.kind}, unverified", label, warning, None)
    if calibrated:
        fit = (table.calibration or {}).get("fit_error_pct")
        base += f" (fit ±{fit:.1f}%)" if isinstance(fit, (int, float)) else ""
    return Verdict(table.kind, "here", table.kind, base, None, ratio)
