"""Optuna storages by URL, and the bookkeeping that lets workers share one study.

- default: an Optuna JournalStorage file in the run folder (`study.journal`). It is Optuna's
  recommended storage for several processes on one machine (append-only log under a file lock)
  and several times faster than SQLite for a predictor-driven search, where storage writes are
  the cost of a trial (see benchmarks/search_quality.py for the measured rates).
- `sqlite:///PATH`, `postgresql://...`, any SQLAlchemy URL Optuna's RDBStorage accepts: many
  workers on many machines (PostgreSQL), with Optuna's heartbeat so that a killed worker's trial
  is marked failed by the next worker instead of blocking the count.
- `journal:PATH`: a journal file elsewhere (e.g. on a shared disk).
- `memory`: nothing persisted (no resume, no second worker), for the fastest exploratory runs:
  the journal's fsync per storage write is a large part of a predictor-driven trial's cost.

A worker records `host:pid` on each trial it runs. Journal files have no heartbeat, so a worker
starting on a journal fails the RUNNING trials of processes on its own host that no longer exist
(a kill -9 leaves one behind); a RUNNING trial of a live or remote worker is left alone.
"""
from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.errors import UserError

HEARTBEAT_S = 30  # RDB storages: a trial silent for GRACE_S is a dead worker's
GRACE_S = 120
WORKER_ATTR = "worker"


def default_url(run_dir: Path) -> str:
    return f"journal:{run_dir / 'study.journal'}"


def open_storage(url: str) -> Any:
    """An Optuna storage for `url`; one that cannot be opened or reached is a UserError."""
    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:"):])
        if not path.parent.is_dir():
            raise UserError(f"--storage {url}: folder {path.parent} does not exist")
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except (OSError, ValueError) as exc:
            raise UserError(f"--storage {url}: cannot open the journal file ({exc})") from None
    if "://" not in url:
        raise UserError(f"--storage: {url!r} is not a storage URL (expected sqlite:///FILE, "
                        "postgresql://USER@HOST/DB, journal:FILE, memory)")
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                          engine_kwargs={"pool_pre_ping": True})
    except ModuleNotFoundError as exc:
        raise UserError(f"--storage {url}: the database driver is not installed ({exc.name}); "
                        "for PostgreSQL: pip install 'hybrid-nas[postgres]'") from None
    except Exception as exc:  # SQLAlchemy/driver errors have many types; all mean "cannot reach it"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--storage {url}: cannot open the storage ({first[:200]})") from None


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
    """Mark as FAIL the RUNNING trials whose worker is gone; returns how many."""
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9; the heartbeat is why RDB storages have it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat storages (RDB); a no-op for journals
    host = socket.gethostname()
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)
            failed += 1
    return failed
