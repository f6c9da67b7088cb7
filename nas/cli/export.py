"""`nas export ARCH --onnx FILE [--weights CKPT]`: ONNX of the inference form."""
from __future__ import annotations

import argparse
from pathlib import Path

from search_spaces.reference import resolve_arch
from nas.builder import build_model
from nas.cli.args import output_file, seed
from nas.export import export_onnx


def run(args: argparse.Namespace) -> int:
    arch = resolve_arch(args.arch)
    out = output_file("--onnx", Path(args.onnx))  # a folder, device node or FIFO is refused before the export
    model = build_model(arch, seed=args.seed)
    if args.weights:
        from nas.train.weights import load_weights_strict

        load_weights_strict(model, args.weights)  # keys and shapes must fit exactly, or one line says where not
    export_onnx(model, arch.resolution, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {arch.name}, {arch.resolution}px, "
          f"dynamic batch, RepViT branches fused)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export an architecture to ONNX",
                       description="Export ARCH (re-parameterised for inference) to ONNX with a dynamic "
                                   "batch axis; the graph is checked with onnx.checker.")
    p.add_argument("arch", help="architecture JSON file or reference-zoo name")
    p.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx path")
    p.add_argument("--weights", metavar="CKPT", help="trained weights (state dict or nas checkpoint)")
    p.add_argument("--seed", type=seed, default=0, help="init seed when no weights are given (default 0)")
    p.set_defaults(func=run)
