"""Export of a built network in its inference form (RepViT branches fused): ONNX and TFLite (LiteRT).

ONNX. Uses the TorchScript-based exporter: it is 20x faster than the dynamo exporter on these small
graphs (0.3 s vs 7.5 s measured for a conv block), which matters when the latency-table builder
exports hundreds of blocks. The graph is checked with onnx.checker.

TFLite (LiteRT): a Pixel 6 app runs models with LiteRT (XNNPACK on CPU), so this is the phone's
own format. `export_tflite` converts the same inference form (`inference_copy`) with litert-torch
and adds what only this converter needs:

- **Zero parameters.** The builder starts residual branches as identity by zero-initialising
  their last BN gamma (RepViT's channel mixer, LeViT's attention projection and MLP), as the
  papers' code does; biases and LeViT's attention biases start at zero too. The converter folds
  such branches away as the dead code they are on those weights (repvit_m0_9: 92 ops instead of
  197), so an untrained model converts to a *different, smaller graph* than the trained one and
  anything timed on it is wrong. Trained weights are exported as they are (they hold no all-zero
  tensors in practice). For an untrained model (its outputs mean nothing; what it is for is the
  graph) `fill_zeros=True` gives every all-zero parameter tensor seeded N(0, FILL_STD) values
  (`fill_zero_params`) on a copy before fusing, so the file holds the ops a trained model would.
  The parity check's reference is that filled model, so it still compares like with like.
- **EdgeViT's LocalProp.** A depthwise `ConvTranspose2d` with kernel = stride = r is split per
  channel by the converter (540 TRANSPOSE_CONV + 561 SLICE for edgevit_xxs, +25% LiteRT time, as
  issue 25 measured). With kernel = stride it is exactly a grouped 1x1 conv to C*r*r channels
  followed by PixelShuffle(r): each output pixel is one input pixel times one weight plus the bias
  either way (`rewrite_for_litert`; exact up to one fp32 rounding in PyTorch, tested). edgevit_xxs then converts
  to 671 ops with no TRANSPOSE_CONV. Not rewritten (yet): the strided slices `x[..., ::r, ::r]`
  (EdgeViT's delegate sampling, LeViT's shrink-attention queries) stay STRIDED_SLICE, which
  XNNPACK does not delegate; the exact rewrite is a depthwise stride-r 1x1 conv of weight 1, but
  the slice is inline in the blocks' forward.
- **Parity.** The converted file runs in the LiteRT interpreter on a seeded random input and its
  output must lie within `TOLERANCE` of PyTorch's (max abs difference over the max abs PyTorch
  output: untrained logits range from ~0.5 to ~1e6 across the zoo, so an absolute bound would be
  either meaningless or unmeetable); nothing is written otherwise. The reference is the unfused
  PyTorch model, so the check covers the fusion and the rewrite as well as the converter.

Input and output stay channels-first (1, 3, H, W) -> (1, classes), fp32, batch 1 (the converter
takes static shapes), the same layout as the ONNX export.

Both packages are optional extras: `litert` (the interpreter, `ai-edge-litert`) and
`litert-convert` (the converter, `litert-torch`, which pulls jax and pins pydantic < 2.12), both
imported only when used. A missing one raises `MissingExtra`, a `UserError` naming the extra.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.atomic import atomic_write_bytes
from nas.errors import UserError
from nas.profile import inference_copy

OPSET = 17


def onnx_bytes(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...],
               dynamic_batch: bool = True, fuse: bool = True, check: bool = True,
               dynamic_axes: dict[str, dict[int, str]] | None = None) -> bytes:
    """Serialized ONNX of `model` on `example` input(s); batch axis dynamic unless disabled.
    `check=False` skips onnx.checker and the exporter's constant folding (the latency-table
    builder exports thousands of units whose every kind the tests check; ONNX Runtime folds
    constants itself when it loads a model). `dynamic_axes` adds symbolic axes by input name."""
    import onnx  # onnx: ~1 s (protobuf), only once a graph is exported (the exporter loads it too)

    model = inference_copy(model) if fuse else model.eval()
    inputs = example if isinstance(example, tuple) else (example,)
    names = ["input"] if len(inputs) == 1 else [f"input{i}" for i in range(len(inputs))]
    axes = {n: {0: "batch"} for n in names} | {"output": {0: "batch"}} if dynamic_batch else None
    if dynamic_axes:  # further symbolic axes (the latency builder's per-resolution graphs)
        axes = {n: {**(axes or {}).get(n, {}), **dynamic_axes.get(n, {})} for n in [*names, "output"]}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, inputs, buf, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["output"], dynamic_axes=axes, do_constant_folding=check)
    data = buf.getvalue()
    if check:
        onnx.checker.check_model(onnx.load_from_string(data))
    return data


def export_onnx(model: nn.Module, resolution: int, path: str | os.PathLike[str]) -> Path:
    """Write `model` (classifier taking 3 x resolution x resolution) to `path` atomically."""
    data = onnx_bytes(model, torch.zeros(1, 3, resolution, resolution))
    return atomic_write_bytes(path, data)


# --- TFLite (LiteRT) -------------------------------------------------------------------------

# max |LiteRT - PyTorch| / max |PyTorch|. Measured: <= 3e-6 on the filled zoo models, but up to
# 1.7e-4 on an untrained, unfilled repvit_m0_9 on some inputs (its random init is chaotic: the max
# output ranges from 44 to 1e5 over six random inputs); a wrong graph (a lost branch, a transposed
# layout) is off by a sizeable fraction of the output. 1e-3 catches that without flaking on fp32
# rounding.
TOLERANCE = 1e-3
FILL_STD = 0.1  # std of the values given to all-zero parameters of an untrained model

CONVERTER_EXTRA, INTERPRETER_EXTRA = "litert-convert", "litert"


class MissingExtra(UserError):
    """An optional package is not installed; `extra` is the pip extra that brings it."""

    def __init__(self, what: str, extra: str) -> None:
        self.extra = extra
        self.install = f"pip install -e '.[{extra}]'"
        super().__init__(f"{what} needs the {extra} extra: {self.install}")


class ConversionError(UserError):
    """The converter rejects the model: a limit of the converter (e.g. litert-torch 0.10 on a
    MobileViT transformer over one token per patch, a 2x2 map: 'tfl.batch_matmul ... invalid output
    rank'), stated in one line, not a traceback."""


class ParityError(RuntimeError):
    """The converted model's output differs from PyTorch's by more than the tolerance: a converter
    bug, not the user's input."""


@dataclass(frozen=True)
class TfliteExport:
    """What `export_tflite` wrote and how closely the file reproduces PyTorch."""

    path: Path
    max_abs_diff: float
    output_scale: float  # max |PyTorch output| on the check input
    filled: int  # all-zero parameter tensors given random values (0 for trained weights)

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / max(self.output_scale, 1e-12)


def _import(module: str, what: str, extra: str) -> Any:
    """`module`, imported quietly (the converter's import alone prints a dozen log lines), or
    `MissingExtra` naming `extra`."""
    try:
        with _quiet():
            return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(what, extra) from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the converter's and interpreter's chatter (TF/absl logs, torchao's load failures,
    progress bars, XNNPACK's banner) written straight to file descriptors 1 and 2; replayed on
    stderr if the block fails, so that a traceback keeps its context."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:  # after the restore: the replay goes to the real stderr
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace"))


def fill_zero_params(model: nn.Module, seed: int = 0) -> int:
    """Give every all-zero floating parameter of `model` (in place) values drawn from
    N(0, FILL_STD) with a generator seeded by `seed`; the number of tensors filled. Only for an
    untrained model: see the module docstring for why."""
    generator = torch.Generator().manual_seed(seed)
    filled = 0
    with torch.no_grad():
        for param in model.parameters():
            if param.is_floating_point() and param.numel() and not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * FILL_STD)
                filled += 1
    return filled


class _PixelShuffleProp(nn.Sequential):
    """Depthwise transposed conv with kernel = stride = r as grouped 1x1 conv + PixelShuffle(r)."""


def _pixel_shuffle_prop(deconv: nn.ConvTranspose2d) -> nn.Module:
    """The exact rewrite of `deconv` if it is depthwise with kernel = stride, no padding, no
    dilation and square kernel; `deconv` itself otherwise. Channel c*r*r + a*r + b of the 1x1
    conv holds weight[c, 0, a, b], which PixelShuffle puts at offset (a, b) of channel c."""
    r = deconv.kernel_size[0]
    channels = deconv.in_channels
    if not (deconv.groups == channels == deconv.out_channels and deconv.kernel_size == (r, r)
            and deconv.stride == (r, r) and deconv.padding == (0, 0) and deconv.output_padding == (0, 0)
            and deconv.dilation == (1, 1) and deconv.padding_mode == "zeros"):
        return deconv
    conv = nn.Conv2d(channels, channels * r * r, 1, groups=channels, bias=deconv.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(deconv.weight.reshape(channels * r * r, 1, 1, 1))
        if deconv.bias is not None:
            conv.bias.copy_(deconv.bias.repeat_interleave(r * r))
    return _PixelShuffleProp(conv, nn.PixelShuffle(r))


def rewrite_for_litert(model: nn.Module) -> nn.Module:
    """Replace (in place) the layers the converter lowers badly by exact equivalents: every
    depthwise ConvTranspose2d with kernel = stride (EdgeViT's LocalProp) by `_pixel_shuffle_prop`."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.ConvTranspose2d):
            setattr(model, name, _pixel_shuffle_prop(child))
        else:
            rewrite_for_litert(child)
    return model


def require_converter() -> None:
    """Raise `MissingExtra` unless both the converter and the interpreter (for the parity check)
    can be imported: callers check this before long work, not after it."""
    _import("litert_torch", "TFLite conversion", CONVERTER_EXTRA)
    _import("ai_edge_litert.interpreter", "TFLite conversion", CONVERTER_EXTRA)


def tflite_bytes(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...],
                 channel_last_io: bool = False) -> bytes:
    """The fp32 .tflite flatbuffer of `model` (already in its inference form) on `example` input(s).

    `channel_last_io`: every 4-D input and output is NHWC, the converter's own layout, instead of
    NCHW with a transpose at each edge. A latency unit is cut out of a network whose inner layers
    exchange NHWC tensors: timed with NCHW edges it would pay two transposes the network does not
    (a 64 px stem: 442 us instead of 298)."""
    litert_torch = _import("litert_torch", "TFLite conversion", CONVERTER_EXTRA)
    inputs = example if isinstance(example, tuple) else (example,)
    model = model.eval()
    with _quiet(), torch.no_grad():
        if channel_last_io:
            out = model(*inputs)
            outs = out if isinstance(out, tuple) else (out,)
            model = litert_torch.to_channel_last_io(model, args=[i for i, t in enumerate(inputs) if t.dim() == 4],
                                                    outputs=[i for i, t in enumerate(outs) if t.dim() == 4])
            inputs = tuple(t.permute(0, 2, 3, 1) if t.dim() == 4 else t for t in inputs)
        try:
            return bytes(litert_torch.convert(model, inputs).model_content())
        except Exception as exc:  # the converter's errors have no common type
            raise ConversionError(f"the LiteRT converter rejects this model: {converter_reason(str(exc))}") from None


def converter_reason(message: str) -> str:
    """The converter's error in one short line: its last line, from the MLIR 'error:' on where it
    has one (what precedes it is a source path of this machine's site-packages)."""
    last = message.strip().splitlines()[-1] if message.strip() else "unknown error"
    return last[last.find("error:"):][:200] if "error:" in last else last[:200]


def litert_interpreter(data: bytes, threads: int = 1, default_delegates: bool = True) -> Any:
    """A LiteRT interpreter of the .tflite `data` with tensors allocated: XNNPACK on CPU with
    `threads` threads, as an app runs it (`default_delegates=False`: the bare builtin ops)."""
    module = _import("ai_edge_litert.interpreter", "running a .tflite", INTERPRETER_EXTRA)
    resolver = module.OpResolverType.AUTO if default_delegates else \
        module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with _quiet():
        interpreter = module.Interpreter(model_content=data, num_threads=threads,
                                         experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    return interpreter


def run_tflite(data: bytes, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Output of the .tflite `data` on the one input `x`, run by the LiteRT interpreter (XNNPACK)."""
    interpreter = litert_interpreter(data, threads)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    with _quiet():
        interpreter.invoke()
    return np.array(interpreter.get_tensor(out["index"]))


def tflite_op_counts(data: bytes) -> dict[str, int]:
    """{op name: count} of the .tflite `data` as the interpreter sees it (before delegation)."""
    counts: dict[str, int] = {}
    for op in litert_interpreter(data, default_delegates=False)._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def export_tflite(model: nn.Module, resolution: int, path: str | os.PathLike[str], *,
                  fill_zeros: bool = False, seed: int = 0) -> TfliteExport:
    """Convert `model` (classifier on 1 x 3 x resolution x resolution) to fp32 .tflite, check it
    against PyTorch in the LiteRT interpreter, and write it to `path` atomically.

    `fill_zeros=True` (an untrained model) fills all-zero parameters first (`fill_zero_params`
    with `seed`), so that the converter keeps every branch; `model` itself is never changed.
    Raises `MissingExtra` without the extras and `ParityError` (nothing written) when the
    outputs differ by more than `TOLERANCE` relative to the output's scale."""
    require_converter()
    reference = copy.deepcopy(model).eval()
    filled = fill_zero_params(reference, seed) if fill_zeros else 0
    deploy = rewrite_for_litert(inference_copy(reference))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, resolution, resolution, generator=generator)
    data = tflite_bytes(deploy, x)
    with torch.no_grad():
        expected = reference(x).numpy()
    got = run_tflite(data, x.numpy())
    if got.shape != expected.shape:
        raise ParityError(f"LiteRT output shape {got.shape} != PyTorch {expected.shape}")
    result = TfliteExport(Path(path), float(np.abs(got - expected).max()), float(np.abs(expected).max()), filled)
    if not result.relative_diff <= TOLERANCE:
        raise ParityError(f"LiteRT output differs from PyTorch by {result.max_abs_diff:.3g} (max |output| "
                          f"{result.output_scale:.3g}; tolerance {TOLERANCE:g} relative): not written")
    atomic_write_bytes(path, data)
    return result
