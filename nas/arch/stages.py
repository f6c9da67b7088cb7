"""Per-family stage records of the ArchConfig.

A stage is a run of `depth` blocks of one family at one width. Every stage may open with a
downsampling layer (`stride: 2`); the family decides what that layer is, as its paper does
(a stride-2 inverted residual for MV2/MobileViT, RepViT's separate downsampling block, EdgeViT's
patch embedding, LeViT's shrink attention, Mobile-Former's stride-2 mobile sub-block).

These classes are pure data (no torch): they are what the JSON says, validated. Numbers and flags
are strict: `true` is not a depth, `"2"` is not a width and `1` is not a flag (an integer may
stand for a float). The modules that realise them live in `nas/blocks/<family>.py`, one per family.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, model_validator
from pydantic_core import PydanticCustomError


def _exact_int(value: Any) -> Any:
    """An integer choice (`stride: 1`) must be an integer: `true` and `1.0` equal 1 but are not one."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


EXACT_INT = BeforeValidator(_exact_int)  # for Literal[...] of ints, which pydantic cannot make strict
OneOf12 = Annotated[Literal[1, 2], EXACT_INT]
OneOf124 = Annotated[Literal[1, 2, 4], EXACT_INT]
OneOf35 = Annotated[Literal[3, 5], EXACT_INT]
OneOf357 = Annotated[Literal[3, 5, 7], EXACT_INT]

Activation = Literal["relu", "relu6", "hswish", "swish", "gelu"]
SEMode = Literal["none", "all", "alternate"]
"""Squeeze-excitation inside a stage: in no block, every block, or every other block (first,
third, ...) as RepViT does. "Last stages only" is an architecture-level placement expressed by
setting `all`/`alternate` on the last stages; the search space offers it as one choice."""


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    depth: StrictInt = Field(ge=1, le=24,
                             description="blocks in the stage (for attention families: transformer layers)")
    width: StrictInt = Field(ge=8, le=2048, description="output channels of the stage")
    stride: OneOf12 = Field(2, description="2: the stage opens with its family's downsampling layer")


class MV2Stage(_Stage):
    """MobileNetV2/V3 inverted residual (also EfficientNet-Lite's MBConv and MobileViT's MV2):
    1x1 expand, kxk depthwise (the stage stride on the first block), optional SE, linear 1x1
    project, residual when the shape is kept. MobileNetV3's per-block expansion sizes and
    activations are written as several consecutive stages (stride-1 stages allowed)."""

    block: Literal["mv2"] = "mv2"
    expand: StrictFloat = Field(4.0, ge=1.0, le=8.0, description="hidden = make_divisible(block input channels * "
                          "expand, 8); 1: no expansion conv (MobileNetV2's first block)")
    kernel: OneOf357 = Field(3, description="depthwise kernel")
    se: SEMode = Field("none", description="MobileNetV3 SE on the hidden features (hidden/4 rounded to 8, "
                       "ReLU, hard-sigmoid gate)")
    act: Activation = Field("relu6", description="activation after the expand and depthwise convs")


class RepViTStage(_Stage):
    """RepViT block: RepVGG-style DW token mixer (kxk + 1x1 + identity, then BN; fused to one kxk DW
    at inference), optional SE, residual 1x1 FFN channel mixer. A separate downsampling layer
    (RepViT block without SE, DW stride-2, 1x1 to `width`, FFN) opens the stage when stride is 2
    or the width changes; `depth` counts the blocks after it (RepViT-M0.9: 2, 2, 14, 2)."""

    block: Literal["repvit"] = "repvit"
    expand: StrictFloat = Field(2.0, ge=1.0, le=6.0, description="FFN hidden = make_divisible(channels * expand, 8)")
    kernel: OneOf357 = Field(3, description="depthwise kernel of the token mixer and the downsampling")
    se: SEMode = Field("alternate", description="SE (rd 0.25, ReLU, sigmoid) after the token mixer; counted "
                       "from the first block after the downsampling layer, which itself has none")
    act: Activation = Field("gelu", description="FFN activation")


class MobileViTStage(_Stage):
    """MobileViT stage: (stride-2 MV2 when stride 2) then one MobileViT block whose transformer
    has `depth` layers of dimension `dim` on unfolded `patch` x `patch` patches."""

    block: Literal["mobilevit"] = "mobilevit"
    dim: StrictInt = Field(ge=16, le=1024, description="transformer embedding dimension d")
    mlp_ratio: StrictFloat = Field(2.0, ge=1.0, le=6.0, description="FFN hidden = round(dim * mlp_ratio)")
    heads: StrictInt = Field(4, ge=1, le=16, description="attention heads; must divide dim")
    patch: OneOf124 = 2
    expand: StrictFloat = Field(4.0, ge=1.0, le=8.0, description="expansion of the opening MV2 (stride 2, or stride 1 "
                          "when the input width differs from `width`)")
    kernel: OneOf35 = Field(3, description="n of the block's local and fusion n x n convs")
    act: Activation = "swish"

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> MobileViTStage:
        if self.dim % self.heads:
            raise ValueError(f"heads: {self.heads} does not divide dim ({self.dim})")
        return self


class LGLStage(_Stage):
    """EdgeViT stage: patch-embedding downsample, then `depth` local-global-local blocks
    (LocalAgg, GlobalSparseAttn over tokens sub-sampled by `sample_rate`, LocalProp)."""

    block: Literal["lgl"] = "lgl"
    mlp_ratio: StrictFloat = Field(4.0, ge=1.0, le=6.0, description="hidden = int(width * mlp_ratio) in both "
                             "FFNs of a block (LocalAgg's conv FFN and the transformer's MLP)")
    heads: StrictInt = Field(ge=1, le=16, description="attention heads; must divide width (EdgeViT: width // "
                       "head_dim, head_dim 36 for XXS, 48 for XS/S)")
    sample_rate: OneOf124 = Field(2, description="r: one delegate token per r x r window attends; "
                                          "1: plain attention and no LocalAgg, as the official last stage")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> LGLStage:
        if self.width % self.heads:
            raise ValueError(f"heads: {self.heads} does not divide width ({self.width})")
        return self


class LeViTStage(_Stage):
    """LeViT stage: (shrink-attention downsample when stride 2, or a stride-1 shrink attention
    when the width changes; in_channels // key_dim heads, value dim 4 * key_dim, then a residual
    MLP) then `depth` pairs of attention-with-bias and MLP residual blocks, Hardswish activations."""

    block: Literal["levit"] = "levit"
    heads: StrictInt = Field(ge=1, le=16, description="heads of the stage's attention blocks (independent of width)")
    key_dim: StrictInt = Field(16, ge=8, le=64, description="query/key dim per head (LeViT's D)")
    attn_ratio: StrictFloat = Field(2.0, ge=1.0, le=4.0, description="value dim per head = attn_ratio * key_dim")
    mlp_ratio: StrictFloat = Field(2.0, ge=1.0, le=6.0)


class FormerStage(_Stage):
    """Mobile-Former stage: `depth` blocks of a mobile (inverted residual, dynamic ReLU) sub-block
    and a former (transformer over `tokens` global tokens) sub-block joined by the two-way
    light cross-attention bridge. With stride 2 the first block is the paper's Mobile-Former-down
    (stride-2 DW-expand, PW, DW-expand, PW). `lite: true` is instead the paper's stage-1
    bneck-lite (DW-expand, PW; no bridge, tokens pass by untouched)."""

    block: Literal["former"] = "former"
    expand: StrictFloat = Field(4.0, ge=1.0, le=8.0, description="stride-1 blocks: hidden = round(in_channels * "
                          "expand); lite: the integer channel multiplier of its depthwise conv")
    down_expand: StrictInt = Field(6, ge=1, le=8, description="Mobile-Former-down: channel multiplier of the "
                             "stride-2 depthwise conv (hidden = in_channels * down_expand)")
    down_expand2: StrictInt = Field(4, ge=1, le=8, description="Mobile-Former-down: channel multiplier of "
                              "its second depthwise conv (hidden = width * down_expand2)")
    kernel: OneOf35 = 3
    tokens: StrictInt = Field(6, ge=1, le=16)
    token_dim: StrictInt = Field(192, ge=16, le=1024)
    heads: StrictInt = Field(4, ge=1, le=16, description="heads of the former's self-attention over the tokens")
    bridge_heads: StrictInt = Field(2, ge=1, le=16, description="heads of the Mobile<->Former cross-attentions")
    mlp_ratio: StrictFloat = Field(2.0, ge=1.0, le=6.0, description="MLP ratio of the former sub-block")
    groups: OneOf124 = Field(1, description="groups of the mobile path's 1x1 convs, each followed "
                                     "by a channel shuffle (Mobile-Former-26M: 4)")
    lite: StrictBool = Field(False,
                             description="bneck-lite blocks (the paper's stage 1) instead of Mobile-Former blocks")
    closing_bridge: StrictBool = Field(False, description="end with one more Mobile->Former bridge on the stage "
                                 "output, so the classifier's token has seen the last feature map "
                                 "(the official models do this after their last block)")
    # Added after v1 (nas.arch.schema.LATER_DEFAULTS: left out of hashes and unit keys while false)
    shuffle_after_dw: StrictBool = Field(False, description="bneck-lite and Mobile-Former-down blocks: shuffle "
                                         "the channels right after each expanding depthwise conv (in as many "
                                         "groups as it has input channels), before the grouped 1x1, and not after "
                                         "the 1x1 (Mobile-Former-26M's release); false: after every grouped 1x1")

    @model_validator(mode="after")
    def _divisible(self) -> FormerStage:
        if self.lite and self.expand != int(self.expand):
            raise ValueError(f"expand: bneck-lite expands inside a depthwise conv and needs an integer, "
                             f"got {self.expand}")
        if self.lite and self.closing_bridge:
            raise ValueError("closing_bridge: a bneck-lite stage has no bridge")
        if self.shuffle_after_dw and self.groups == 1:
            raise ValueError("shuffle_after_dw: needs grouped 1x1 convs (groups > 1)")
        if self.token_dim % self.heads:
            raise ValueError(f"heads: {self.heads} does not divide token_dim ({self.token_dim})")
        for name in ("bridge_heads", "groups"):
            if self.width % getattr(self, name):
                raise ValueError(f"{name}: {getattr(self, name)} does not divide width ({self.width})")
        return self


STAGE_TYPES = (MV2Stage, RepViTStage, MobileViTStage, LGLStage, LeViTStage, FormerStage)
BLOCK_FAMILIES: tuple[str, ...] = tuple(t.model_fields["block"].default for t in STAGE_TYPES)
