"""Parameter and FLOP counts, with one convention for the whole project.

Counts are taken on the inference form of the network (eval mode, re-parameterised branches
fused, as the papers report deploy models). FLOPs are fvcore's count, which is multiply-accumulates
(one fused multiply-add = one FLOP), the convention the five papers use for "FLOPs"/"MAdds".
"""
from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from nas.arch.schema import ArchConfig
from nas.blocks.common import fuse_model


def inference_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with re-parameterisable branches fused."""
    return fuse_model(copy.deepcopy(model).eval())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, resolution: int | None = None,
                inputs: tuple[torch.Tensor | None, ...] | None = None) -> int:
    """fvcore FLOPs (MACs) of one image at `resolution`, or of the call on `inputs` (a latency
    unit's tensors, None for an absent argument)."""
    from fvcore.nn import FlopCountAnalysis

    for name in ("fvcore.nn.jit_analysis", "fvcore"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if inputs is None:
        if resolution is None:
            raise ValueError("count_flops: give resolution or inputs")
        inputs = (torch.zeros(1, 3, resolution, resolution),)
    analysis = FlopCountAnalysis(model.eval(), inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total())


def profile_arch(arch: ArchConfig, model: nn.Module | None = None) -> dict[str, int]:
    """{'params': ..., 'flops': ...} of the inference form of `arch` (built if not given)."""
    from nas.builder import build_model

    model = inference_copy(model if model is not None else build_model(arch))
    return {"params": count_params(model), "flops": count_flops(model, arch.resolution)}
