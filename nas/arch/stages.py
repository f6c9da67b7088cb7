"""Per-family stage records of the ArchConfig.

A stage is a run of `depth` blocks of one family at one width. Every stage may open with a
downsampling layer (`stride: 2`); the family decides what that layer is, as its paper does
(a stride-2 inverted residual for MV2/MobileViT, RepViT's separate downsampling block, EdgeViT's
patch embedding, LeViT's shrink attention, Mobile-Former's stride-2 mobile sub-block).

These classes are pure data (no torch): they are what the JSON says, validated. The modules that
realise them live in `nas/blocks/<family>.py`, one per family.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Activation = Literal["relu", "relu6", "hswish", "swish", "gelu"]
SEMode = Literal["none", "all", "alternate"]
"""Squeeze-excitation inside a stage: in no block, every block, or every other block (first,
third, ...) as RepViT does. "Last stages only" is an architecture-level placement expressed by
setting `all`/`alternate` on the last stages; the search space offers it as one choice."""


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    depth: int = Field(ge=1, le=24, description="blocks in the stage (for attention families: transformer layers)")
    width: int = Field(ge=8, le=2048, description="output channels of the stage")
    stride: Literal[1, 2] = Field(2, description="2: the stage opens with its family's downsampling layer")


class MV2Stage(_Stage):
    """MobileNetV2/V3 inverted residual (also EfficientNet-Lite's MBConv and MobileViT's MV2)."""

    block: Literal["mv2"] = "mv2"
    expand: float = Field(4.0, ge=1.0, le=8.0, description="hidden = make_divisible(in_channels * expand, 8)")
    kernel: Literal[3, 5, 7] = 3
    se: SEMode = "none"
    act: Activation = "relu6"


class RepViTStage(_Stage):
    """RepViT block: RepVGG-style DW token mixer (3x3 + 1x1 + identity, fused to one 3x3 DW at
    inference), optional SE, 1x1 FFN channel mixer; separate downsampling block when stride 2."""

    block: Literal["repvit"] = "repvit"
    expand: float = Field(2.0, ge=1.0, le=6.0, description="FFN hidden = width * expand")
    kernel: Literal[3, 5, 7] = 3
    se: SEMode = "alternate"
    act: Activation = "gelu"


class MobileViTStage(_Stage):
    """MobileViT stage: (stride-2 MV2 when stride 2) then one MobileViT block whose transformer
    has `depth` layers of dimension `dim` on unfolded `patch` x `patch` patches."""

    block: Literal["mobilevit"] = "mobilevit"
    dim: int = Field(ge=16, le=1024, description="transformer embedding dimension d")
    mlp_ratio: float = Field(2.0, ge=1.0, le=6.0, description="FFN hidden = round(dim * mlp_ratio)")
    heads: int = Field(4, ge=1, le=16, description="attention heads; must divide dim")
    patch: Literal[1, 2, 4] = 2
    expand: float = Field(4.0, ge=1.0, le=8.0, description="expansion of the downsampling MV2")
    kernel: Literal[3, 5] = Field(3, description="n of the block's local and fusion n x n convs")
    act: Activation = "swish"

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "MobileViTStage":
        if self.dim % self.heads:
            raise ValueError(f"heads: {self.heads} does not divide dim ({self.dim})")
        return self


class LGLStage(_Stage):
    """EdgeViT stage: patch-embedding downsample, then `depth` local-global-local blocks
    (LocalAgg, GlobalSparseAttn over tokens sub-sampled by `sample_rate`, LocalProp)."""

    block: Literal["lgl"] = "lgl"
    mlp_ratio: float = Field(4.0, ge=1.0, le=6.0)
    heads: int = Field(ge=1, le=16)
    sample_rate: Literal[1, 2, 4] = 2


class LeViTStage(_Stage):
    """LeViT stage: (shrink-attention downsample when stride 2) then `depth` pairs of
    attention-with-bias and MLP residual blocks, Hardswish activations."""

    block: Literal["levit"] = "levit"
    heads: int = Field(ge=1, le=16)
    key_dim: int = Field(16, ge=8, le=64)
    attn_ratio: float = Field(2.0, ge=1.0, le=4.0, description="value dim per head = attn_ratio * key_dim")
    mlp_ratio: float = Field(2.0, ge=1.0, le=6.0)


class FormerStage(_Stage):
    """Mobile-Former stage: `depth` blocks of a mobile (inverted residual, dynamic ReLU) sub-block
    and a former (transformer over `tokens` global tokens) sub-block joined by the two-way
    light cross-attention bridge."""

    block: Literal["former"] = "former"
    expand: float = Field(4.0, ge=1.0, le=8.0)
    kernel: Literal[3, 5] = 3
    tokens: int = Field(6, ge=1, le=16)
    token_dim: int = Field(192, ge=16, le=1024)
    heads: int = Field(2, ge=1, le=16)
    mlp_ratio: float = Field(2.0, ge=1.0, le=6.0, description="MLP ratio of the former sub-block")


STAGE_TYPES = (MV2Stage, RepViTStage, MobileViTStage, LGLStage, LeViTStage, FormerStage)
BLOCK_FAMILIES: tuple[str, ...] = tuple(t.model_fields["block"].default for t in STAGE_TYPES)
