"""The search loop: one Optuna study per run folder, shared by any number of workers.

`--trials N` is the number of COMPLETE trials the study should hold, whoever ran them. Each worker
runs Optuna's loop until complete + running trials reach the count, so running the same command
again resumes a study (nothing runs if it is complete) and two workers on one storage finish N
trials between them. A worker whose new trial finds the count already taken by others' running
trials ends it as PRUNED ("surplus") without evaluating it.

A study remembers what it searches (space, device table, budget, objective, sampler, accuracy
source): resuming it with different settings is an error rather than a silently mixed study.

Seeds: the worker that creates a study samples with `--seed` itself, so one worker on a fresh study
is reproducible (same command, same trials). Every other worker (a second one, a resumed run) draws
its sampler seed from the user's seed, its host, pid and a random token, so that workers started
together never replay each other's draws; concurrent runs are not reproducible. Each trial records
the seed of the sampler that proposed it (`sampler_seed`).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.errors import ParameterError
from nas.search.problem import SearchProblem
from nas.search.storage import WORKER_ATTR, fail_dead_workers_trials, worker_id
from search_spaces.presets import space_to_dict

SAMPLERS = ("tpe", "nsga2", "random")
SURPLUS_ATTR = "surplus"
SEED_ATTR = "sampler_seed"
PARAMETERISATION = "flat"  # every trial asks every parameter (HybridSpace.suggest_flat)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """TPE (constraint-aware, the default), NSGA-II (constraint-aware, for Pareto fronts), random."""
    if name == "tpe":
        # Set, not inherited: the speed of the search rests on the joint (multivariate) draw of every
        # parameter (HybridSpace.suggest_flat), and concurrent workers on one storage need the liar.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=20, multivariate=True, constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=50)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ParameterError("sampler", f": unknown sampler {name!r} (expected one of {', '.join(SAMPLERS)})")


def study_identity(problem: SearchProblem, table_sha256: str, source_sha256: str) -> dict[str, Any]:
    """What a study's trials mean; a resumed study must match it field by field."""
    space = json.dumps(space_to_dict(problem.space), sort_keys=True)
    return {"space": problem.space.name, "space_sha256": hashlib.sha256(space.encode()).hexdigest()[:16],
            "device": problem.table.device, "table_sha256": table_sha256, "budget_ms": problem.budget_ms,
            "objective": problem.objective, "accuracy_sha256": source_sha256, "parameters": PARAMETERISATION}


def worker_seed(seed: int) -> int:
    """A sampler seed no other worker has: `seed` mixed with this host, process and a random token."""
    mix = f"{seed}:{socket.gethostname()}:{os.getpid()}:".encode() + secrets.token_bytes(16)
    return int.from_bytes(hashlib.sha256(mix).digest()[:4], "little")  # numpy's seeds are < 2**32


def open_study(storage: Any, name: str, problem: SearchProblem, identity: dict[str, Any], sampler_name: str,
               seed: int) -> tuple[optuna.Study, int]:
    """Create the study or load it (checking its identity, which includes the sampler); returns it
    with this worker's sampler seed: `seed` for the worker that created it, else `worker_seed`."""
    identity = {**identity, "sampler": sampler_name}
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        study = None
    sampler_seed = worker_seed(seed)
    if study is None:
        try:
            study = optuna.create_study(study_name=name, storage=storage, directions=problem.directions,
                                        sampler=make_sampler(sampler_name, seed))
            sampler_seed = seed
            for key, value in identity.items():
                study.set_user_attr(key, value)
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it meanwhile
            study = optuna.load_study(study_name=name, storage=storage)
    stored = study.user_attrs
    for key, value in identity.items():
        if key in stored and stored[key] != value:
            raise ParameterError("study", f" {name}: this study was started with {key}={stored[key]!r}, not {value!r}; "
                            "resume it with the same settings, or start a new study under another name")
    study.sampler = make_sampler(sampler_name, sampler_seed)
    return study, sampler_seed


def _counts(study: optuna.Study) -> tuple[int, list[int]]:
    """(complete trials, numbers of running ones), from one scan of the trials."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    return len(trials) - len(running), running


def feasible_value(trial: optuna.trial.FrozenTrial, budget_ms: float) -> float | None:
    """The accuracy of a complete trial within budget, else None."""
    if trial.state != TrialState.COMPLETE or trial.user_attrs.get("latency_ms", float("inf")) > budget_ms:
        return None
    return trial.values[0]


@dataclass
class LoopReport:
    ran: int
    surplus: int
    failed_dead: int
    seconds: float


def _queue_owned_trial(study: optuna.Study, me: dict[str, Any]) -> None:
    """Queue the trial Optuna's loop will take next, already naming its worker. A trial Optuna
    creates itself is RUNNING before the objective can name its worker, and a worker killed in
    between (one journal write) would leave a RUNNING trial no one can tell is dead: it would hold
    one of --trials forever. A queued (WAITING) trial counts for nothing until a worker takes it."""
    study.enqueue_trial({}, user_attrs=me)


def run_trials(study: optuna.Study, problem: SearchProblem, trials: int,
               progress: Callable[[int, float | None], None] | None = None,
               sampler_seed: int | None = None) -> LoopReport:
    """Evaluate trials until the study holds `trials` complete ones. Optuna's own loop runs them
    (`study.optimize`: RDB heartbeats, FAIL on an exception); the objective prunes a surplus trial
    and a callback stops once complete + running trials reach the count. Each trial records its
    worker and `sampler_seed` (the seed open_study gave this worker's sampler)."""
    failed_dead = fail_dead_workers_trials(study)
    me = {WORKER_ATTR: worker_id(), **({SEED_ATTR: sampler_seed} if sampler_seed is not None else {})}
    best = max((v for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if (v := feasible_value(t, problem.budget_ms)) is not None), default=None)
    counts = {"ran": 0, "surplus": 0}
    complete, running = _counts(study)
    if progress:
        progress(complete, best)

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        for key, value in me.items():
            if trial.user_attrs.get(key) != value:  # another worker queued it
                trial.set_user_attr(key, value)
        complete, running = _counts(study)
        if trial.number not in sorted(running)[:max(trials - complete, 0)]:
            trial.set_user_attr(SURPLUS_ATTR, True)
            counts["surplus"] += 1
            raise optuna.TrialPruned("surplus: the study reached its trial count meanwhile")
        return problem(trial)

    def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal best
        if trial.state == TrialState.COMPLETE:
            counts["ran"] += 1
            value = feasible_value(trial, problem.budget_ms)
            if value is not None and (best is None or value > best):
                best = value
        complete, running = _counts(study)
        if progress:
            progress(complete, best)
        if complete + len(running) >= trials:
            study.stop()
        else:
            _queue_owned_trial(study, me)

    started = time.perf_counter()
    if complete + len(running) < trials:
        _queue_owned_trial(study, me)
        study.optimize(objective, callbacks=[after], catch=(), gc_after_trial=False)
    return LoopReport(counts["ran"], counts["surplus"], failed_dead, time.perf_counter() - started)
