"""A latency unit as a standalone ONNX model (inference form, batch 1).

Tracing a unit to ONNX costs ~50-200 ms, more than timing it. Most units trace to the same graph at
every feature-map size (convolutions, pooling to 1x1, attention over tokens whose count does not
appear in the graph), so the builder exports such a unit once with symbolic H and W and fixes the
sizes per resolution before timing; a static-shaped model is what ONNX Runtime optimises and what
the end-to-end networks are. Units whose forward takes size-dependent Python branches (MobileViT's
resize-to-patch-multiple, EdgeViT's pad-to-even, LeViT's grid-tied attention bias, einops
rearranges keyed on the patch grid) are exported per shape. `tests/test_latency_units.py`
checks every generic op against PyTorch at a second size.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nas.blocks.common import fuse_model
from nas.blocks.units import Unit
from nas.export import onnx_bytes

SPATIALLY_GENERIC_OPS = frozenset({
    "stem", "head", "mv2.ir", "repvit.down", "repvit.block", "former.m2f", "former.former", "former.mobile",
    "former.down", "former.f2m", "former.lite", "former.entry",
})


class UnitGraph(nn.Module):
    """Feeds the unit its tensors, with None where the unit takes an absent argument (e.g. no
    incoming tokens), so that the ONNX graph's inputs are exactly the tensors."""

    def __init__(self, module: nn.Module, present: tuple[bool, ...]) -> None:
        super().__init__()
        self.module, self.present = module, present

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        it = iter(tensors)
        return self.module(*(next(it) if p else None for p in self.present))


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples units are built with (LeViT grids, shapes)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def entry_unit(entry: Any) -> Unit:
    """The unit a table entry (`table.Entry`: op, args, input shapes) was timed from."""
    return Unit.make(entry.op, [None if s is None else tuple(s) for s in entry.inputs],
                     **{k: _tuples(v) for k, v in entry.args.items()})


def unit_module(unit: Unit, seed: int = 0) -> nn.Module:
    """The unit's inference form (RepViT branches fused), weights drawn from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fuse_model(unit.build().eval())


def export_group(unit: Unit) -> bytes:
    """ONNX of `unit`; for spatially generic ops with symbolic H, W (see `with_shapes`)."""
    inputs = tuple(t for t in unit.example_inputs() if t is not None)
    graph = UnitGraph(unit_module(unit), tuple(s is not None for s in unit.inputs))
    axes = None
    if unit.op in SPATIALLY_GENERIC_OPS:
        names = ["input"] if len(inputs) == 1 else [f"input{i}" for i in range(len(inputs))]
        axes = {n: {2: "height", 3: "width"} for n, t in zip(names, inputs) if t.dim() == 4}
        axes["output"] = {2: "out_height", 3: "out_width"} if _output_dim(graph, inputs) == 4 else {}
    return onnx_bytes(graph, inputs, dynamic_batch=False, fuse=False, check=False, dynamic_axes=axes)


def _output_dim(graph: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    with torch.no_grad():
        return graph(*inputs).dim()


def export_key(unit: Unit) -> str:
    """Units with equal export keys share one exported graph."""
    if unit.op in SPATIALLY_GENERIC_OPS:
        return unit.op + "(" + ",".join(f"{k}={v}" for k, v in unit.args) + ")"
    return unit.key


def with_shapes(model: bytes, unit: Unit) -> bytes:
    """`model` (from `export_group` of a unit with the same export key) with `unit`'s static input
    sizes filled in; outputs are left for ONNX Runtime's shape inference."""
    import onnx  # onnx: ~1 s (protobuf), only while a table is built (`nas latency` loads this module)

    proto = onnx.load_from_string(model)
    shapes = [s for s in unit.inputs if s is not None]
    for inp, shape in zip(proto.graph.input, shapes):
        for dim, size in zip(inp.type.tensor_type.shape.dim, (1, *shape)):
            dim.Clear()
            dim.dim_value = size
    for out in proto.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.Clear()
    del proto.graph.value_info[:]
    return proto.SerializeToString()


def unit_onnx(unit: Unit) -> bytes:
    """Static-shaped ONNX of one unit (what the probe pack ships and the builder times)."""
    return with_shapes(export_group(unit), unit) if unit.op in SPATIALLY_GENERIC_OPS else export_group(unit)
