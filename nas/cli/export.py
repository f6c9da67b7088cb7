"""`nas export ARCH [--onnx FILE] [--tflite FILE] [--weights CKPT]`: ONNX and/or TFLite (LiteRT)
of the inference form."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.builder import build_model
from nas.cli.args import output_file, seed
from nas.errors import UserError
from nas.export import TOLERANCE, MissingExtra, export_onnx, export_tflite, require_converter
from nas.train.weights import load_weights_strict
from search_spaces.reference import resolve_arch


def run(args: argparse.Namespace) -> int:
    if not (args.onnx or args.tflite):
        raise UserError("nas export: give --onnx FILE, --tflite FILE or both")
    arch = resolve_arch(args.arch)
    # A folder, device node or FIFO is refused before any export starts.
    onnx_out = output_file("--onnx", Path(args.onnx)) if args.onnx else None
    tflite_out = output_file("--tflite", Path(args.tflite)) if args.tflite else None
    if onnx_out and tflite_out and onnx_out.resolve() == tflite_out.resolve():
        raise UserError(f"--onnx and --tflite name the same file {onnx_out}")
    if tflite_out:
        try:
            require_converter()  # before the build, not after it
        except MissingExtra as exc:
            raise UserError(f"--tflite needs the {exc.extra} extra: {exc.install}") from None
    model = build_model(arch, seed=args.seed)
    if args.weights:
        load_weights_strict(model, args.weights)  # keys and shapes must fit exactly, or one line says where not
    if onnx_out:
        export_onnx(model, arch.resolution, onnx_out)
        print(f"wrote {onnx_out} ({onnx_out.stat().st_size / 1e6:.2f} MB, {arch.name}, {arch.resolution}px, "
              f"dynamic batch, RepViT branches fused)")
    if tflite_out:
        result = export_tflite(model, arch.resolution, tflite_out, fill_zeros=not args.weights, seed=args.seed)
        filled = (f", untrained: {result.filled} all-zero parameter tensors filled (seed {args.seed})"
                  if result.filled else "")
        print(f"wrote {tflite_out} ({tflite_out.stat().st_size / 1e6:.2f} MB, {arch.name}, {arch.resolution}px, "
              f"fp32 NCHW batch 1, RepViT branches fused{filled}; LiteRT vs PyTorch max abs diff "
              f"{result.max_abs_diff:.2g} on outputs up to {result.output_scale:.3g}: {result.relative_diff:.1e} "
              f"relative, tolerance {TOLERANCE:g})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export an architecture to ONNX and/or TFLite (LiteRT)",
                       description="Export ARCH (re-parameterised for inference) to ONNX with a dynamic "
                                   "batch axis (checked with onnx.checker) and/or to fp32 TFLite for LiteRT "
                                   "(its output checked against PyTorch in the LiteRT interpreter). At least "
                                   "one of --onnx, --tflite.")
    p.add_argument("arch", help="architecture JSON file or reference-zoo name")
    p.add_argument("--onnx", metavar="FILE", help="output .onnx path")
    p.add_argument("--tflite", metavar="FILE",
                   help="output .tflite path (needs the litert-convert extra: pip install -e '.[litert-convert]')")
    p.add_argument("--weights", metavar="CKPT", help="trained weights (state dict or nas checkpoint)")
    p.add_argument("--seed", type=seed, default=0,
                   help="init seed when no weights are given (default 0); an untrained model's all-zero "
                        "parameters get seeded random values for --tflite, so the converter keeps every branch")
    p.set_defaults(func=run)
