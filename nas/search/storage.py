"""Optuna storages by URL, and the bookkeeping that lets workers share one study.

- default: an Optuna JournalStorage file in the run folder (`study.journal`). It is Optuna's
  recommended storage for several processes on one machine (append-only log under a file lock)
  and several times faster than SQLite for a predictor-driven search, where storage writes are
  the cost of a trial (see benchmarks/search_quality.py for the measured rates).
- `postgresql://USER:PASSWORD@HOST/DB` (also `postgres://` and `postgresql+psycopg://`, all
  driven by psycopg 3, the `[postgres]` extra), `sqlite:///PATH` or any SQLAlchemy URL Optuna's
  RDBStorage accepts: many workers on many machines, with Optuna's heartbeat so that a killed
  worker's trial is marked failed by a live worker instead of blocking the count (every
  HEARTBEAT_S, failed after GRACE_S of silence; `HYBRID_NAS_HEARTBEAT_S` sets the interval, the
  grace is four of them). A trial killed before its first heartbeat (one round trip after it
  starts) has none and Optuna never fails it: the dead-pid check below does, on the same host.
- `journal:PATH`: a journal file elsewhere (e.g. on a shared disk).
- `memory`: nothing persisted (no resume, no second worker), for the fastest exploratory runs:
  the journal's fsync per storage write is a large part of a predictor-driven trial's cost.

A worker records `host:pid` on each trial it runs. Journal files have no heartbeat, so a worker
starting on a journal fails the RUNNING trials of processes on its own host that no longer exist
(a kill -9 leaves one behind; such trials get `failed_by`); a RUNNING trial of a live or remote
worker is left alone.

A journal whose last record was cut off (power loss, a full disk, a kill mid-write) is repaired
when it is opened: cut back to its last complete record, the original kept beside it as
`FILE.torn-<time>`, one warning line on stderr. URLs are only ever shown or recorded with the
password masked (`display_url`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from nas.errors import ParameterError, UserError

HEARTBEAT_S = 30  # RDB storages: a trial silent for GRACE_S is a dead worker's
GRACE_S = 120
WORKER_ATTR = "worker"
FAILED_BY_ATTR = "failed_by"
URL_FORMS = "sqlite:///FILE, postgresql://USER:PASSWORD@HOST:PORT/DB, journal:FILE, memory"


def default_url(run_dir: Path) -> str:
    return f"journal:{run_dir / 'study.journal'}"


def display_url(url: str) -> str:
    """`url` as it may be shown or written: any password replaced by `***`."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url  # sqlalchemy: ~0.3 s, only for a database URL

        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: mask what looks like user:password@
        shown = re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(?i)((?:^|[?&])password=)[^&]*", r"\1***", shown)


def normalise_url(url: str) -> str:
    """The SQLAlchemy URL for `url`: `postgres://` and `postgresql://` name psycopg 3 explicitly."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def heartbeat() -> tuple[int, int]:
    """(interval, grace) in seconds for RDB storages."""
    text = os.environ.get("HYBRID_NAS_HEARTBEAT_S")
    if not text:
        return HEARTBEAT_S, GRACE_S
    try:
        interval = int(text)
    except ValueError:
        interval = 0
    if interval < 1:
        raise UserError(f"HYBRID_NAS_HEARTBEAT_S={text!r}: expected a whole number of seconds >= 1")
    return interval, 4 * interval


def open_storage(url: str) -> Any:
    """An Optuna storage for `url`; one that cannot be opened or reached is a UserError."""
    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if url.startswith("journal:"):
        return _open_journal(url)
    shown = display_url(url)
    if "://" not in url:
        raise ParameterError("storage", f": {shown!r} is not a storage URL (expected {URL_FORMS})")
    interval, grace = heartbeat()
    rdb_url = normalise_url(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if rdb_url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(rdb_url, heartbeat_interval=interval, grace_period=grace,
                                                  engine_kwargs=engine_kwargs)
        except ImportError as exc:
            name = exc.name or getattr(exc.__cause__ or exc.__context__, "name", None)  # Optuna re-raises
            missing = f"no module {name!r}" if name else " ".join(str(exc).split())[:120]
            raise ParameterError("storage", f" {shown}: the database driver is not installed ({missing}); "
                            "for PostgreSQL: pip install -e \".[postgres]\" (psycopg 3)") from None
        except Exception as exc:  # SQLAlchemy/driver errors have many types: say which case it is
            if _is_creation_race(exc) and attempt < 4:
                time.sleep(0.2 * (attempt + 1))  # another worker is creating the tables right now
                continue
            raise ParameterError("storage", f" {shown}: {_why(exc, url)}") from None
    raise AssertionError("unreachable")


def _first_line(exc: BaseException, url: str) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    text = re.sub(r"^connection failed: ", "", text)
    password = _password(url)
    return (text.replace(password, "***") if password else text)[:200]


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url  # sqlalchemy: ~0.3 s, only for a database URL

        return make_url(url).password or None
    except Exception:
        return None


def _why(exc: BaseException, url: str) -> str:
    detail = _first_line(exc, url)
    low = detail.lower()
    if any(s in low for s in ("authentication failed", "no password supplied", "password is required",
                              "role \"", "pg_hba.conf")):
        return f"authentication failed: check the user and password in the URL ({detail})"
    if "database \"" in low and "does not exist" in low:
        return f"the server is reachable but has no such database: create it first ({detail})"
    if any(s in low for s in ("connection refused", "could not translate host", "name or service not known",
                              "timeout expired", "timed out", "no route to host", "network is unreachable",
                              "could not connect", "is the server running", "connection to server")):
        return f"server unreachable: is it running and accepting connections there? ({detail})"
    return f"cannot open the storage ({detail})"


def _is_creation_race(exc: BaseException) -> bool:
    """Two workers creating Optuna's tables at once on a fresh database: one loses, harmlessly."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "already exists" in text or ("duplicate key" in text and "pg_" in text)


# ------------------------------------------------------------------ journal files
JOURNAL_HEAD = b'{"op_code":'


def _record(line: bytes, cheap: bool = True) -> bool:
    """Whether `line` (without its newline) is one complete journal record. `cheap`: a line that
    opens one record and closes an object is taken without parsing it (a torn record can only be
    the last line, which is parsed)."""
    if not line.startswith(JOURNAL_HEAD):
        return False
    if cheap and line.endswith(b"}") and line.count(JOURNAL_HEAD) == 1:
        return True
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return False


def _intact(data: bytes) -> bool:
    """Every line a record, the last one parsed and ended by a newline."""
    if not data.endswith(b"\n"):
        return False
    lines = data[:-1].split(b"\n")
    return _record(lines[-1], cheap=False) and all(_record(line) for line in lines[:-1])


def _open_journal(url: str) -> Any:
    path = Path(url[len("journal:"):])
    if not path.parent.is_dir():
        raise ParameterError("storage", f" {url}: folder {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise ParameterError("storage", f" {url}: {path} is not a regular file")
    check_journal(path, url)
    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except (OSError, ValueError) as exc:
        raise ParameterError("storage", f" {url}: cannot open the journal file ({exc})") from None


def check_journal(path: Path, url: str) -> None:
    """Check `path` is an Optuna journal and repair a torn ending, under the journal's own lock
    (so no worker is appending meanwhile). A journal is one JSON record per line, each written
    whole and fsynced under the lock; only the process writing the last one can be cut off.

    - the last record incomplete (no newline, not JSON) and nothing complete after it: cut back to
      the last complete record;
    - a torn record with a complete one glued onto it (an older version appended after a tear):
      the torn part removed;
    - a first line that is not a journal record: not a journal, a UserError;
    - any other damage (a bad record followed by good ones): a UserError naming the line.
    Every repair first copies the file to FILE.torn-<time> and prints one warning line."""
    if not path.exists() or path.stat().st_size == 0 or _intact(path.read_bytes()):
        return
    lock = JournalFileSymlinkLock(str(path))  # the lock Optuna's writers take: none is appending now
    lock.acquire()
    try:
        data = path.read_bytes()
        if _intact(data):
            return  # it was a record being written
        repaired, dropped, why = _repair(data, path, url)
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        shutil.copy2(path, backup)
        if repaired == data[:len(repaired)]:
            os.truncate(path, len(repaired))
        else:
            tmp = path.with_name(f".{path.name}.repair-{os.getpid()}")
            tmp.write_bytes(repaired)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        lock.release()
    print(f"warning: {path}: {why} ({dropped} bytes dropped); repaired to its last complete record, "
          f"the original kept as {backup}", file=sys.stderr)


def _repair(data: bytes, path: Path, url: str) -> tuple[bytes, int, str]:
    lines = data.split(b"\n")
    tail_complete = data.endswith(b"\n")
    if tail_complete:
        lines.pop()  # the empty string after the last newline
    good = [_record(line, cheap=i < len(lines) - 1) for i, line in enumerate(lines)]
    if (not good[0] and not lines[0].startswith(JOURNAL_HEAD)
            and not (len(lines) == 1 and JOURNAL_HEAD.startswith(lines[0]))):
        raise ParameterError("storage", f" {url}: {path} is not an Optuna journal file (its first line is not a "
                        "journal record); give a journal file or a new path")
    kept, why = [], "its last record was cut off (power loss, a full disk or a killed writer)"
    for i, (line, ok) in enumerate(zip(lines, good)):
        if ok:
            kept.append(line)
            continue
        glued = line.rfind(JOURNAL_HEAD)
        if glued > 0 and (i < len(lines) - 1 or tail_complete) and _record(line[glued:], cheap=False):
            kept.append(line[glued:])
            why = "a cut-off record had another appended to it"
            continue
        if not any(good[i + 1:]):  # the torn end: nothing complete after it
            break
        raise ParameterError("storage", f" {url}: {path} line {i + 1} is not a journal record and complete records "
                        "follow it: damaged beyond a torn end; move it aside and start a new study (another name)")
    repaired = b"".join(line + b"\n" for line in kept)
    return repaired, len(data) - len(repaired), why


# ------------------------------------------------------------------ workers
def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_workers_trials(study: optuna.Study) -> int:
    """Mark as FAIL the RUNNING trials whose worker is gone; returns how many this check failed
    (RDB storages: Optuna's heartbeat first, then the same-host check, which records `failed_by`)."""
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9; the heartbeat is why RDB storages have it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat storages (RDB); a no-op for journals
    host = socket.gethostname()
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            study._storage.set_trial_user_attr(trial._trial_id, FAILED_BY_ATTR, f"{worker_id()}: worker pid gone")
            study.tell(trial.number, state=TrialState.FAIL)
            failed += 1
    return failed
