"""`nas search --budget 1ms --device pixel6`: the most accurate member of a space within a latency budget.

    nas search --budget 1ms --device pixel6 [--trials N] [--objective acc|pareto]
               [--supernet CKPT | --predictor FILE] [--sampler tpe|nsga2|random]
               [--storage URL] [--study NAME] [--out runs/] [--seed S]

Latency comes from the device's table; accuracy from the shipped predictor (default), another
predictor file, or a supernet checkpoint (real inherited-weight evaluation, ~1 s a member). The
accuracy source fixes the space searched: the one it was trained on. Results go to
`<out>/<study>/`; running the same command again resumes the study, and any number of workers
may share one `--storage`.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import optuna
from rich.console import Console
from rich.table import Table

from nas.budget import parse_budget
from nas.cli import search_finalists
from nas.cli.args import add_data_option, output_dir, path_name, seed
from nas.cli.progress import counting_bar
from nas.errors import UserError
from nas.search.problem import OBJECTIVES, SearchProblem, fastest_member
from nas.search.results import SearchContext, write_results
from nas.search.run import SAMPLERS, open_study, run_trials, study_identity
from nas.search.sources import PredictorSource, SupernetSource
from nas.search.storage import default_url, display_url, open_storage
from predictors.accuracy.model import DEFAULT_PREDICTOR, file_sha256
from predictors.latency.devices import open_device_table

DEFAULT_TRIALS = 500


def _study_name(device: str, budget_ms: float, objective: str) -> str:
    return f"{device}-{budget_ms:g}ms-{objective}"


def _describe(arch) -> str:
    stages = ", ".join(f"{s.block} {s.depth}x{s.width}" for s in arch.stages)
    return f"{arch.resolution} px, stem {arch.stem.depth}x{arch.stem.channels}, {stages}, head {arch.head.channels}"


def run_search(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    budget = parse_budget(args.budget)
    if args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: unknown sampler {args.sampler!r} (expected one of {', '.join(SAMPLERS)})")
    if args.objective not in OBJECTIVES:
        raise UserError(f"--objective: {args.objective!r} is not one of {', '.join(OBJECTIVES)}")
    if args.trials < 1:
        raise UserError(f"--trials: {args.trials}, expected a positive number")
    if args.supernet and args.predictor:
        raise UserError("--supernet and --predictor: give one accuracy source, not both")
    output_dir("--out", args.out, create=False)  # a file or /proc/x there fails now, not after the setup
    table, table_path = open_device_table(args.device)
    search_finalists.check(args, table)
    source = _source(args, DEFAULT_PREDICTOR)
    problem = SearchProblem(source.space, table, budget, source, args.objective)
    label = f"{table.device} ({table.kind_note})"
    try:
        smallest_ms = problem.latency_ms(source.space.smallest())
    except UserError as exc:
        raise UserError(f"--device {args.device}: its table does not cover the {source.space.name} space ({exc})") \
            from None
    if smallest_ms > budget:
        arch, fastest = fastest_member(source.space, table)
        if fastest > budget:
            raise UserError(f"--budget {args.budget}: nothing in the {source.space.name} space fits {budget:g} ms on "
                            f"{label}; the fastest member found takes {fastest:.3f} ms ({_describe(arch)})")

    study_name = args.study or _study_name(args.device, budget, args.objective)
    run_dir = Path(args.out) / study_name
    url = args.storage or default_url(run_dir)
    created = not run_dir.exists()
    output_dir("--out", run_dir)
    try:
        storage = open_storage(url)
    except UserError:
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()  # nothing half-written
        raise
    table_sha = file_sha256(table_path)
    study, sampler_seed = open_study(storage, study_name, problem, study_identity(problem, table_sha, source.sha256),
                                     args.sampler, args.seed)
    print(f"searching the {source.space.name} space ({source.space.size():.3g} members) for the best "
          f"{source.label} within {budget:g} ms on {label}")
    with counting_bar("search", args.quiet, total=args.trials) as report:
        def progress(complete: int, best: float | None) -> None:
            report(complete, status=f"best within budget {100 * best:.2f}%" if best is not None
                   else "none within budget yet")

        loop = run_trials(study, problem, args.trials, progress, sampler_seed)
    ctx = SearchContext(study_name, problem, str(table_path), table_sha, args.sampler, args.seed, display_url(url))
    summary = write_results(study, ctx, run_dir)
    rate = loop.ran / loop.seconds * 60 if loop.seconds > 0 and loop.ran else 0.0
    print(f"{loop.ran} trials this run in {loop.seconds:.1f} s ({rate:.0f}/min); study: {summary['complete']} "
          f"complete ({summary['distinct']} distinct), {summary['feasible']} within budget"
          + (f"; {loop.failed_dead} trials of dead workers marked failed" if loop.failed_dead else ""))
    _print_top(summary, problem)
    if search_finalists.finish(args, study, ctx, run_dir):
        print("best.json is the finalists' winner (finalists.json: every measurement and rung)")
    print(f"results: {run_dir}/ (best.json, pareto.json, trials.csv, pareto.png, report.md)")
    return 0


def _source(args: argparse.Namespace, default_predictor: Path):
    if args.supernet:
        return SupernetSource(args.supernet, args.data)
    return PredictorSource(args.predictor or default_predictor)


def _print_top(summary: dict, problem) -> None:
    if not summary["top"]:
        print(f"no trial within {problem.budget_ms:g} ms yet: more --trials, or a larger --budget")
        return
    kind = problem.table.provenance.tag  # measured / calibrated / estimated / on other machine
    out = Table(title=f"top architectures within {problem.budget_ms:g} ms")
    for col in ("rank", "trial", "accuracy %", f"latency ms ({kind})", "params M", "FLOPs M"):
        out.add_column(col, justify="right")
    for t in summary["top"]:
        out.add_row(str(t["rank"]), str(t["trial"]), f"{100 * t['accuracy']:.2f}", f"{t['latency_ms']:.3f}",
                    f"{t['params'] / 1e6:.3f}", f"{t['flops'] / 1e6:.1f}")
    Console().print(out)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="latency-constrained architecture search (Optuna)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", required=True, help="latency budget with a unit: 1ms, 750us, 1.5e-3s")
    p.add_argument("--device", default="host", help="device table (see `nas devices`; default host)")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"complete trials the study should hold (default {DEFAULT_TRIALS})")
    p.add_argument("--objective", default="acc", help="acc (best accuracy within budget; default) or pareto "
                                                      "(accuracy vs latency front)")
    p.add_argument("--supernet", metavar="CKPT", help="rate members with this supernet (real, slower)")
    p.add_argument("--predictor", metavar="FILE", help="accuracy predictor file (default: the shipped one)")
    add_data_option(p, use="with --supernet: BN recalibration and val; with --refine: the finalists train on it",
                    default="$HYBRID_NAS_DATA, else the shared imagenette2-64, with --supernet; none with --refine")
    p.add_argument("--sampler", default="tpe", help="tpe (default), nsga2 or random")
    p.add_argument("--storage", metavar="URL", help="Optuna storage shared by workers: postgresql://..., "
                                                    "sqlite:///FILE, journal:FILE, memory (not persisted; "
                                                    "default: a journal file in the run folder)")
    p.add_argument("--study", type=path_name,
                   help="study name, also the run folder's name: no '/' or '..' (default DEVICE-BUDGET-OBJECTIVE)")
    p.add_argument("--out", default="runs", help="parent folder of the run folder (default runs/)")
    p.add_argument("--seed", type=seed, default=0, help="sampler seed, 0 to 2**32-1 (default 0): reproducible for "
                                                        "one worker on a fresh study, not across concurrent workers")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    search_finalists.add_arguments(p)
    p.set_defaults(func=run_search)
