"""Timing with LiteRT (TFLite, XNNPACK on CPU): the runtime a Pixel 6 app uses.

The same protocol as ONNX Runtime's (`measure.time_calls`: warm-up, then a minimum count and time,
median and 10th/90th percentiles), on the LiteRT interpreter with a fixed thread count and its
default XNNPACK delegate, as the phone's benchmark tool and an app run a model.

A unit is converted as the exporter converts a whole network (`nas.export`: inference form, RepViT
fused, all-zero parameters filled so that no branch is folded away, EdgeViT's LocalProp rewritten),
but with channel-last inputs and outputs: inside a converted network the layers exchange NHWC
tensors, so a unit timed with NCHW edges would pay transposes the network does not. Conversion
takes ~1-2 s per unit (tracing, lowering, flatbuffer), 10-30x the timing itself; it cannot share a
graph across resolutions as the ONNX builder does (the converter takes static shapes), which is why
`cross_runtime.py` samples units and derives the rest. Both extras are needed: the converter
(`litert-convert`) for units and networks, the interpreter (`litert`) to time a .tflite.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from nas.blocks.units import Unit
from nas.export import fill_zero_params, litert_interpreter, rewrite_for_litert, tflite_bytes
from nas.profile import inference_copy
from predictors.latency.measure import OVERHEAD_POLICY, RunPolicy, Timing, time_calls
from predictors.latency.unit_export import UnitGraph, unit_module


def unit_tflite(unit: Unit, seed: int = 0) -> bytes:
    """The .tflite of one unit (fused, then all-zero parameters filled), channel-last at its edges."""
    inputs = tuple(t for t in unit.example_inputs() if t is not None)
    module = unit_module(unit, seed)
    fill_zero_params(module, seed)
    graph = UnitGraph(rewrite_for_litert(module), tuple(s is not None for s in unit.inputs))
    return tflite_bytes(graph, inputs, channel_last_io=True)


def network_tflite(model: nn.Module, resolution: int, seed: int = 0) -> bytes:
    """The .tflite of a built network as `nas export --tflite` converts an untrained one (zero
    parameters filled, fused, LocalProp rewritten; NCHW input); `model` is not changed."""
    reference = copy.deepcopy(model).eval()
    fill_zero_params(reference, seed)
    return tflite_bytes(rewrite_for_litert(inference_copy(reference)), torch.zeros(1, 3, resolution, resolution))


def time_tflite(data: bytes, threads: int, policy: RunPolicy | None = None, seed: int = 0) -> Timing:
    """Timing of `invoke` on the .tflite `data` with standard-normal inputs (a fresh interpreter)."""
    interpreter = litert_interpreter(data, threads)
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.standard_normal(detail["shape"], dtype=np.float32))
    return time_calls(interpreter.invoke, policy or RunPolicy())


def overhead_tflite() -> bytes:
    """A single add on one float: what one `invoke` costs with (almost) nothing to compute."""
    return tflite_bytes(_Double(), torch.zeros(1, 1))


class _Double(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x


def call_overhead_us(threads: int) -> Timing:
    """LiteRT's fixed cost per inference, as `measure.call_overhead_us` is ORT's."""
    return time_tflite(overhead_tflite(), threads, OVERHEAD_POLICY)
