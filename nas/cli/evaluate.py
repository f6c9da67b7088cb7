"""`nas evaluate MODEL`: a trained network's test accuracy and its measured latency beside the table's.

MODEL is a `nas train` run folder (its arch.json and model.pt) or an architecture with --weights.
Accuracy is top-1 on the data's test split (or --split val). Latency is timed end to end on this
machine with ONNX Runtime, exported as `nas export` exports (inference form, batch 1), with the
host table's thread count, so it can be set against the host table's prediction; a --device other
than host adds that table's prediction, labelled as what it is (estimated, with its error bars).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import onnxruntime

from nas.arch import ArchConfig, load_arch
from nas.builder import build_model
from nas.cli.args import add_data_option
from nas.data import default_data_root, load_dataset
from nas.errors import UserError
from nas.supernet.evaluate import evaluate_model
from nas.train import load_weights_strict
from predictors.latency.devices import open_device_table
from predictors.latency.predict import predict
from predictors.latency.table import runtime_note
from predictors.latency.validate import measure_network
from search_spaces.reference import resolve_arch


def resolve_model(model: str, weights: str | None) -> tuple[ArchConfig, Path]:
    """(arch, weights file) from a run folder or from an arch plus --weights."""
    path = Path(model)
    if path.is_dir():
        if not (path / "arch.json").is_file():
            raise UserError(f"{path}: not a `nas train` run folder (no arch.json); pass an arch JSON and --weights")
        arch = load_arch(path / "arch.json")
        weights_path = Path(weights) if weights else path / "model.pt"
        if not weights_path.exists():
            raise UserError(f"{weights_path}: file not found (the run has not finished, or pass --weights)")
        return arch, weights_path
    if not weights:
        raise UserError(f"{model}: an architecture needs --weights (or pass a `nas train` run folder)")
    return resolve_arch(model), Path(weights)


def latency_report(arch: ArchConfig, model: Any, device: str, table_path: str | None, threads: int | None
                   ) -> dict[str, Any]:
    """Measured host latency, the host table's prediction, and `device`'s prediction if another."""
    host, _ = open_device_table("host", table_path if device == "host" else None)
    threads = threads or host.threads
    timing = measure_network(model, arch.resolution, threads)
    measured = timing.median_us / 1000
    host_pred = predict(arch, host)
    report: dict[str, Any] = {
        "measured_ms": round(measured, 4), "p10_ms": round(timing.p10_us / 1000, 4),
        "p90_ms": round(timing.p90_us / 1000, 4), "runs": timing.runs, "threads": threads,
        "host_predicted_ms": round(host_pred.ms, 4), "host_error_pct": round(100 * (host_pred.ms / measured - 1), 1),
        "host_table_kind": host.provenance.tag, "host_table_label": host.kind_note,
        "host_table_runtime": runtime_note(host), "measured_runtime": f"ONNX Runtime {onnxruntime.__version__}",
    }
    if device != "host":
        table, _ = open_device_table(device, table_path)
        pred = predict(arch, table)
        report["device"] = {"name": device, "kind": table.provenance.tag, "predicted_ms": round(pred.ms, 4),
                            "error_pct": pred.error_pct, "pipeline_ms": pred.pipeline_ms, "label": pred.label,
                            "runtime": runtime_note(table)}
    return report


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--batch-size", args.batch_size), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise UserError(f"{flag}: expected a positive integer, got {value}")
    arch, weights = resolve_model(args.model, args.weights)
    model = build_model(arch)
    load_weights_strict(model, weights)
    data = load_dataset(args.data or default_data_root(), image_size=arch.resolution)
    if data.num_classes > arch.num_classes:
        raise UserError(f"{data.root}: {data.num_classes} classes, the model predicts {arch.num_classes}")
    split = getattr(data, args.split)
    accuracy = evaluate_model(model, split, arch.resolution, args.batch_size)
    result: dict[str, Any] = {"arch": arch.name, "arch_hash": arch.arch_hash(), "weights": str(weights),
                              "resolution": arch.resolution, "split": args.split, "acc": accuracy["acc"],
                              "loss": accuracy["loss"], "images": accuracy["images"]}
    if not args.no_latency:
        result["latency"] = latency_report(arch, model, args.device, args.table, args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


def _print(r: dict[str, Any]) -> None:
    print(f"{r['arch']} ({r['arch_hash']}) at {r['resolution']} px")
    print(f"  {r['split']} top-1 {100 * r['acc']:.2f}%  loss {r['loss']:.4f}  ({r['images']} images)")
    lat = r.get("latency")
    if not lat:
        return
    print(f"  latency measured on host: {lat['measured_ms']:.3f} ms  (p10 {lat['p10_ms']:.3f}, p90 "
          f"{lat['p90_ms']:.3f}; {lat['runs']} runs, {lat['measured_runtime']}, {lat['threads']} thread(s))")
    print(f"  host table ({lat['host_table_label']}; {lat['host_table_runtime']}) predicts "
          f"{lat['host_predicted_ms']:.3f} ms  ({lat['host_error_pct']:+.1f}% vs measured)")
    if "device" in lat:
        print(f"  {lat['device']['name']} table predicts {lat['device']['label']}; {lat['device']['runtime']}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="test accuracy and measured latency of a trained model",
                       description="Top-1 accuracy of a trained network on the data's test split, and its "
                                   "end-to-end ONNX Runtime latency measured on this machine next to the "
                                   "latency table's prediction.")
    p.add_argument("model", help="a `nas train` run folder, or an architecture JSON / zoo name with --weights")
    p.add_argument("--weights", metavar="CKPT", help="weights file (default: the run folder's model.pt)")
    add_data_option(p)
    p.add_argument("--split", choices=("test", "val"), default="test", help="(default test)")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch (default 256)")
    p.add_argument("--device", default="host", help="also show this device table's prediction (default host)")
    p.add_argument("--table", metavar="FILE", help="use this latency table for --device")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: the host table's)")
    p.add_argument("--no-latency", action="store_true", help="accuracy only")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
