"""`nas describe ARCH`: parameters, FLOPs and a per-stage table of an architecture."""
from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from nas.arch import ArchConfig
from nas.builder import build_model
from nas.profile import count_flops, count_params, inference_copy
from search_spaces.reference import resolve_arch

_STAGE_KEYS = ("depth", "width", "stride")


def describe(arch: ArchConfig) -> dict[str, Any]:
    """Everything `nas describe` shows, as data."""
    model = inference_copy(build_model(arch))
    with torch.no_grad():
        outs = model.stage_outputs(torch.zeros(1, 3, arch.resolution, arch.resolution))
    rows = [{"stage": "stem", "block": f"conv x{arch.stem.depth}", "params": count_params(model.stem),
             "output": list(outs[0].shape[1:]), "details": ""}]
    for i, (spec, stage) in enumerate(zip(arch.stages, model.stages)):
        extra = {k: v for k, v in spec.model_dump().items() if k not in _STAGE_KEYS + ("block",)}
        rows.append({"stage": str(i), "block": spec.block, "depth": spec.depth, "width": spec.width,
                     "stride": spec.stride, "params": count_params(stage), "output": list(outs[i + 1].shape[1:]),
                     "details": ", ".join(f"{k}={v}" for k, v in extra.items())})
    rows.append({"stage": "head", "block": "classifier", "params": count_params(model.head),
                 "output": [arch.num_classes], "details": ""})
    return {"name": arch.name, "hash": arch.arch_hash(), "resolution": arch.resolution,
            "num_classes": arch.num_classes, "params": count_params(model),
            "flops": count_flops(model, arch.resolution), "stages": rows,
            "families": sorted({s.block for s in arch.stages})}


def _print_table(info: dict[str, Any]) -> None:
    table = Table(title=f"{info['name']}  ({info['hash']})  {info['resolution']}px, {info['num_classes']} classes")
    for col in ("stage", "block", "depth", "width", "stride", "output", "params", "details"):
        table.add_column(col, justify="right" if col in ("params", "depth", "width", "stride") else "left")
    for row in info["stages"]:
        table.add_row(row["stage"], row["block"], str(row.get("depth", "")), str(row.get("width", "")),
                      str(row.get("stride", "")), "x".join(map(str, row["output"])), f"{row['params']:,}",
                      row["details"])
    console = Console()
    console.print(table)
    console.print(f"params {info['params'] / 1e6:.3f} M   FLOPs (MACs, fvcore) {info['flops'] / 1e6:.1f} M   "
                  f"families: {', '.join(info['families'])}")


def run(args: argparse.Namespace) -> int:
    info = describe(resolve_arch(args.arch))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_table(info)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("describe", help="parameters, FLOPs and per-stage shapes of an architecture",
                       description="Print parameters, fvcore FLOPs (multiply-accumulates) and a per-stage "
                                   "table (block, output shape, parameters) of ARCH, measured on the "
                                   "inference form (re-parameterised branches fused).")
    p.add_argument("arch", help="architecture JSON file or reference-zoo name (see `nas zoo`)")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=run)
