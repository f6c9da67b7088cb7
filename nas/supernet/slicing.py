"""How a subnet's tensor is cut out of the supernet's largest tensor: the interpretation of the
weight-sharing rules.

The default rule (OFA / BigNAS / AutoFormer) covers almost every tensor of every family:

  - every channel-like dim takes a prefix: the first `width` output channels, the first `expand`
    hidden channels, the first `heads` heads (the fused projections are head-major, so a prefix of
    the fused dim is a prefix of the heads), the first `tokens` tokens;
  - the two spatial dims of a conv kernel take the centre crop (a 3x3 kernel is the middle of the
    5x5 one, as in OFA; OFA's extra kernel-transform matrices are left out for simplicity);
  - elastic depth needs no rule: a subnet's block j is the supernet's block j, so a stage of
    depth d uses the first d blocks.

The few tensors laid out so that a prefix would mix unrelated parts are declared by the module
that owns them, beside the layer, in its `weight_sharing` class attribute (nas/blocks/sharing.py
defines the descriptions; the block modules use them):

  - `Chunks(dim, parts)`: mobilevit.Attention and lgl.GlobalSparseAttn `qkv` rows [q | k | v];
    mobilevit.MobileViTBlock `fusion` conv input cat([block input, transformer output]);
    former.DynamicReLU `coeffs.2` rows [a1 | a2]. Each part takes its own prefix (`chunked`);
  - `GridOffsets()`: levit.Attention `attention_biases` (heads, H*W), indexed by |dy| * W + |dx|
    on the layer's grid: a subnet at a lower resolution has a smaller grid and takes the entries
    of the same offsets (dy, dx) from the largest grid's table (`levit_bias_rule`; the index
    buffers are recomputed by the subnet itself and are not shared);
  - `HeadFeatures()`: head.Head `fc` weight, whose input is cat([pooled features, token 0]);
    each part takes its own prefix (`head_fc_rule`).

Here is only what each description means (`rule_for`). The supernet collects the declarations of
its own modules once (`nas.blocks.sharing.declared_rules`, which rejects one naming a tensor its
module lacks: a renamed layer is an error, not a silent fall-back to prefixes) and looks each
tensor's rule up by its supernet-side name; the member structure's own declarations must agree.

Names: a subnet's `stages.i.<rest>` lives at `stages.i.<family>.<rest>` in the supernet, with two
renames where the subnet has fewer *layers* (not just fewer channels) than the largest member:
an EdgeViT block with sample rate 1 has no LocalAgg (its global half moves from index 1 to 0), and
a stage that opens without a downsampling layer (stride 1 at the same width) has its blocks one
layer earlier (levit: two, its shrink attention and MLP).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nas.arch.schema import ArchConfig
from nas.blocks.lgl import LGLBlock
from nas.blocks.sharing import Chunks, GridOffsets, HeadFeatures, SharingRule

Slicer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SliceContext:
    """What a rule may look at: both networks, the tensor's name in each, and the architecture."""

    sub: nn.Module  # the subnet structure (a HybridNet)
    big: nn.Module  # the supernet
    sub_name: str
    big_name: str
    arch: ArchConfig

    def sub_owner(self) -> nn.Module:
        return self.sub.get_submodule(self.sub_name.rpartition(".")[0])

    def big_owner(self) -> nn.Module:
        return self.big.get_submodule(self.big_name.rpartition(".")[0])


def prefix_slices(big: torch.Size, sub: torch.Size, kernel_dims: int = 0) -> tuple[slice, ...]:
    """Prefix on every dim, centre crop on the last `kernel_dims` dims."""
    out = []
    for d, (b, s) in enumerate(zip(big, sub)):
        if s > b:
            raise ValueError(f"needs {tuple(sub)} but the supernet holds {tuple(big)}")
        start = (b - s) // 2 if d >= len(big) - kernel_dims else 0
        out.append(slice(start, start + s))
    return tuple(out)


def default_rule(big: torch.Tensor, shape: torch.Size, ctx: SliceContext) -> Slicer:
    """Prefix everywhere; centre crop on the kernel dims of a conv weight (a view: gradients and
    in-place BN statistic updates reach the supernet's storage)."""
    kernel_dims = 2 if big.ndim == 4 else 0
    index = prefix_slices(big.shape, shape, kernel_dims)
    return lambda t: t[index]


def chunked(dim: int, chunks: int) -> Callable[[torch.Tensor, torch.Size, SliceContext], Slicer]:
    """A dim made of `chunks` equal concatenated parts: each part takes its own prefix."""
    def rule(big: torch.Tensor, shape: torch.Size, ctx: SliceContext) -> Slicer:
        big_part, sub_part = big.shape[dim] // chunks, shape[dim] // chunks
        if big_part * chunks != big.shape[dim] or sub_part * chunks != shape[dim]:
            raise ValueError(f"dim {dim} of {tuple(shape)} / {tuple(big.shape)} is not {chunks} equal parts")
        kernel_dims = 2 if big.ndim == 4 else 0
        part_big = big.shape[:dim] + (big_part,) + big.shape[dim + 1:]
        part_sub = shape[:dim] + (sub_part,) + shape[dim + 1:]
        inner = prefix_slices(torch.Size(part_big), torch.Size(part_sub), kernel_dims)
        pieces = []
        for c in range(chunks):
            index = list(inner)
            index[dim] = slice(c * big_part + inner[dim].start, c * big_part + inner[dim].stop)
            pieces.append(tuple(index))
        return lambda t: torch.cat([t[i] for i in pieces], dim=dim)
    return rule


def levit_bias_rule(big: torch.Tensor, shape: torch.Size, ctx: SliceContext) -> Slicer:
    """(heads, h*w) of the subnet's grid from (HEADS, H*W) of the largest: first heads, and for each
    offset (dy, dx) of the small grid the entry of the same offset in the large table."""
    (h, w), (big_h, big_w) = ctx.sub_owner().grid, ctx.big_owner().grid
    if h > big_h or w > big_w:
        raise ValueError(f"grid {h}x{w} is larger than the supernet's {big_h}x{big_w}")
    dy, dx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cols = (dy * big_w + dx).reshape(-1)
    heads = shape[0]
    return lambda t: t[:heads].index_select(1, cols)


def head_fc_rule(big: torch.Tensor, shape: torch.Size, ctx: SliceContext) -> Slicer:
    """fc input = [pooled features | token 0]: each part a prefix of the supernet's part."""
    big_tokens = getattr(ctx.big, "head_token_dim", 0) or 0
    sub_tokens = next((s.token_dim for s in reversed(ctx.arch.stages) if s.block == "former" and not s.lite), 0) \
        if ctx.arch.uses_tokens else 0
    if big.ndim != 2 or (sub_tokens and not big_tokens):
        return default_rule(big, shape, ctx)
    feats, big_feats = shape[1] - sub_tokens, big.shape[1] - big_tokens
    rows = shape[0]
    if feats > big_feats or sub_tokens > big_tokens:
        raise ValueError(f"needs {tuple(shape)} but the supernet holds {tuple(big.shape)}")
    if not sub_tokens:
        return lambda t: t[:rows, :feats]
    return lambda t: torch.cat([t[:rows, :feats], t[:rows, big_feats:big_feats + sub_tokens]], dim=1)


Rule = Callable[[torch.Tensor, torch.Size, SliceContext], Slicer]

def rule_for(declared: SharingRule | None) -> Rule:
    """The slicing function of a declared rule; `default_rule` for an undeclared tensor (None).
    A description this module does not know is an error, never the default."""
    if declared is None:
        return default_rule
    if isinstance(declared, Chunks):
        return chunked(declared.dim, declared.parts)
    if isinstance(declared, GridOffsets):
        return levit_bias_rule
    if isinstance(declared, HeadFeatures):
        return head_fc_rule
    raise TypeError(f"no slicing for the weight-sharing rule {declared!r} (nas.supernet.slicing.rule_for)")


# --- names -----------------------------------------------------------------------------------------

def layer_shift(sub_stage: nn.Module, big_stage: nn.Module) -> int:
    """How many leading layers the largest stage has that this subnet's stage lacks: its opening
    downsampling layer(s) when the subnet's stage keeps resolution and width. Found by comparing
    the classes of the first layers (no family needs to announce it)."""
    sub_layers, big_layers = _layers(sub_stage), _layers(big_stage)
    if not sub_layers or not big_layers:
        return 0
    for shift in range(0, 3):
        if shift < len(big_layers) and _kind(big_layers[shift]) == _kind(sub_layers[0]):
            return shift
    return 0


def _layers(stage: nn.Module) -> list[nn.Module]:
    if hasattr(stage, "blocks"):  # levit, former
        return list(stage.blocks)
    return list(stage) if isinstance(stage, nn.Sequential) else []


def _kind(layer: nn.Module) -> tuple[type, ...]:
    """A layer's class, and its branch's for residual wrappers (LeViT: Residual(Attention) is a
    block, Residual(MLP) follows the shrink attention too)."""
    branch = getattr(layer, "branch", None)
    return (type(layer), type(branch)) if branch is not None else (type(layer),)


def rename_in_stage(rest: str, sub_stage: nn.Module, big_stage: nn.Module, shift: int) -> str:
    """Map a name inside a subnet stage to the supernet stage (see the module docstring)."""
    container = "blocks." if hasattr(sub_stage, "blocks") else ""
    if container and not rest.startswith(container):
        return rest
    head, _, tail = rest[len(container):].partition(".")
    if not head.isdigit():
        return rest
    layer = int(head)
    big_layer = layer + shift
    tail = _rename_lgl_block(tail, _layers(sub_stage)[layer], _layers(big_stage)[big_layer])
    return f"{container}{big_layer}.{tail}"


def _rename_lgl_block(tail: str, sub_layer: nn.Module, big_layer: nn.Module) -> str:
    """EdgeViT with sample rate 1 has no LocalAgg: its GlobalBlock (index 0) is index 1 in the
    largest (LocalAgg, GlobalBlock) block."""
    if isinstance(sub_layer, LGLBlock) and isinstance(big_layer, LGLBlock) and len(sub_layer) < len(big_layer):
        head, _, rest = tail.partition(".")
        return f"{int(head) + len(big_layer) - len(sub_layer)}.{rest}"
    return tail
