"""Zero-cost proxies: scores of an untrained network that are claimed to rank trained accuracy.

Each is one small function of (freshly initialised model, one or two real batches), following its
paper; none trains anything, so a search could afford one per candidate (about a second each at
64 px on a CPU). Whether any of them ranks this space better than counting parameters is an
empirical question that benchmarks/accuracy_sources.py answers on the standalone-trained bench.

- `synflow`  Tanaka et al., "Pruning neural networks without any data by iteratively conserving
             synaptic flow" (NeurIPS 2020), used as a NAS proxy by Abdelfattah et al., "Zero-Cost
             Proxies for Lightweight NAS" (ICLR 2021): with every weight replaced by its absolute
             value and an all-ones input, sum over parameters of theta * dR/dtheta, R = sum of outputs.
             Computed in float64 (the products overflow float32 in deep nets), BN in eval mode.
- `naswot`   Mellor et al., "Neural Architecture Search without Training" (ICML 2021): the binary
             activation pattern of each image over all rectifying units; K[i, j] = number of units
             where images i and j agree; score = log|det K|. The hybrid families use GELU,
             Hardswish and dynamic ReLU, not only ReLU: the pattern is the sign of each activation's
             input (which unit is "on"), the paper's definition for ReLU.
- `snip`     Lee et al., "SNIP: single-shot network pruning based on connection sensitivity"
             (ICLR 2019), as a proxy in Abdelfattah et al.: sum |theta * dL/dtheta|, cross-entropy L.
- `grad_norm` Abdelfattah et al.: sum over parameter tensors of ||dL/dtheta||_2.
- `zico`     Li et al., "ZiCo: Zero-shot NAS via inverse Coefficient of Variation on Gradients"
             (ICLR 2023): per layer, log of sum over its weights of mean|g| / std(g), the gradient
             statistics taken over several batches; summed over layers with a nonzero sum.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.Hardswish, nn.SiLU, nn.LeakyReLU)


def _weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The conv and linear weights: the connections the proxies score (not norms or biases)."""
    return [(f"{name}.weight", m.weight) for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)) and m.weight.requires_grad]


def _ce_grads(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()


def synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    ones = torch.ones((1,) + tuple(images.shape[1:]), dtype=torch.float64)
    model.zero_grad(set_to_none=True)
    model(ones).sum().backward()
    total = math.fsum(float((w.detach() * w.grad).sum()) for _, w in _weights(model) if w.grad is not None)
    return math.log(total) if total > 0 else float("-inf")


def naswot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    codes: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        codes.append((inputs[0].detach().flatten(1) > 0).double())

    acts = [m for m in model.modules() if isinstance(m, ACTIVATIONS) or type(m).__name__ == "DynamicReLU"]
    handles = [m.register_forward_hook(hook) for m in acts]
    try:
        model.train()  # the paper scores the network as it trains: BN on batch statistics
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
    if not codes:
        return float("nan")
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T  # agreements: units where both are on, or both off
    return float(torch.linalg.slogdet(kernel).logabsdet)


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.train()
    _ce_grads(model, images, labels)
    return math.fsum(float((w.detach() * w.grad).abs().sum()) for _, w in _weights(model) if w.grad is not None)


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.train()
    _ce_grads(model, images, labels)
    return math.fsum(float(w.grad.norm()) for _, w in _weights(model) if w.grad is not None)


def zico(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, splits: int = 2) -> float:
    """`images` is cut into `splits` batches; the gradient statistics are taken over them."""
    model.train()
    grads: dict[str, list[torch.Tensor]] = {}
    for x, y in zip(images.chunk(splits), labels.chunk(splits)):
        _ce_grads(model, x, y)
        for name, w in _weights(model):
            if w.grad is not None:
                grads.setdefault(name, []).append(w.grad.detach().abs().flatten().clone())
    score = 0.0
    for stack in grads.values():
        g = torch.stack(stack)
        std = g.std(dim=0)
        ratio = (g.mean(dim=0)[std > 0] / std[std > 0]).sum()
        if ratio > 0:
            score += math.log(float(ratio))
    return score


PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "synflow": synflow, "naswot": naswot, "snip": snip, "grad_norm": grad_norm, "zico": zico}


def score_all(build: Callable[[], nn.Module], images: torch.Tensor, labels: torch.Tensor,
              names: Sequence[str] = tuple(PROXIES)) -> dict[str, float]:
    """Every proxy in `names`, each on its own freshly built copy (a proxy may change weights or
    leave gradients behind)."""
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise ValueError(f"names: unknown proxy {unknown[0]!r} (known: {', '.join(PROXIES)})")
    return {name: PROXIES[name](build(), images, labels) for name in names}
