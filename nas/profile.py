"""Parameter and FLOP counts, with one convention for the whole project.

Counts are taken on the inference form of the network (eval mode, re-parameterised branches
fused, as the papers report deploy models). FLOPs are fvcore's count, which is multiply-accumulates
(one fused multiply-add = one FLOP), the convention the five papers use for "FLOPs"/"MAdds".

`deploy_counts` is the RepViT convention beside it: every BatchNorm folded into its conv or
classifier (fvcore counts an eval BN as 2 FLOPs an element, so folding lowers FLOPs as well).
"""
from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from nas.arch.schema import ArchConfig
from nas.blocks.common import ConvBN, fuse_model
from nas.blocks.head import Head
from nas.builder import build_model


def inference_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with re-parameterisable branches fused."""
    return fuse_model(copy.deepcopy(model).eval())


@torch.no_grad()
def _fold_bn_into_linear(bn: nn.BatchNorm1d, fc: nn.Linear) -> nn.Linear:
    """`fc(bn(x))` in eval mode as one Linear. Written here because the classifier's BN (LeViT's
    and RepViT's BN_Linear) comes *before* its Linear, while ConvBN.fused_conv folds a BN into the
    conv *before* it: W' = W diag(s), b' = b + W (beta - mean s), s = gamma / sqrt(var + eps)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Linear(fc.in_features, fc.out_features, device=fc.weight.device, dtype=fc.weight.dtype)
    fused.weight.copy_(fc.weight * scale)
    fused.bias.copy_(fc.bias + fc.weight @ (bn.bias - bn.running_mean * scale))
    return fused


@torch.no_grad()
def _fold_linear_bn(fc: nn.Linear, bn: nn.BatchNorm1d) -> nn.Linear:
    """`bn(fc(x))` in eval mode as one Linear (Mobile-Former's hidden FC-BatchNorm1d):
    W' = diag(s) W, b' = s (b - mean) + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Linear(fc.in_features, fc.out_features, device=fc.weight.device, dtype=fc.weight.dtype)
    fused.weight.copy_(fc.weight * scale[:, None])
    fused.bias.copy_((fc.bias - bn.running_mean) * scale + bn.bias)
    return fused


def deploy_copy(model: nn.Module) -> nn.Module:
    """`inference_copy` with every BatchNorm folded, as RepViT's official deploy model (and its
    params/MACs): each ConvBN becomes its biased conv, each classifier's BN folds into its Linear.
    A BN that no conv precedes (EdgeViT's pre-norms) stays and is counted. Same function in eval mode."""
    model = inference_copy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvBN):
                setattr(parent, name, child.fused_conv())
        if isinstance(parent, Head):  # forward: fc(dropout(norm(x))), dropout the identity in eval
            for norm, fc in (("norm", "fc"), ("norm_dist", "fc_dist")):
                if isinstance(getattr(parent, norm), nn.BatchNorm1d):
                    setattr(parent, fc, _fold_bn_into_linear(getattr(parent, norm), getattr(parent, fc)))
                    setattr(parent, norm, nn.Identity())
            hidden = parent.hidden  # Mobile-Former: Sequential(Linear, BatchNorm1d, act)
            if isinstance(hidden, nn.Sequential) and isinstance(hidden[1], nn.BatchNorm1d):
                hidden[0], hidden[1] = _fold_linear_bn(hidden[0], hidden[1]), nn.Identity()
    return model


def deploy_counts(model: nn.Module, resolution: int) -> tuple[int, int]:
    """(params, FLOPs) of `deploy_copy(model)` on one image at `resolution`."""
    model = deploy_copy(model)
    return count_params(model), count_flops(model, resolution)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, resolution: int | None = None,
                inputs: tuple[torch.Tensor | None, ...] | None = None) -> int:
    """fvcore FLOPs (MACs) of one image at `resolution`, or of the call on `inputs` (a latency
    unit's tensors, None for an absent argument)."""
    from fvcore.nn import FlopCountAnalysis  # fvcore: ~0.1 s (iopath, yacs...), only when FLOPs are counted

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
    model = inference_copy(model if model is not None else build_model(arch))
    return {"params": count_params(model), "flops": count_flops(model, arch.resolution)}
