"""The training recipe: every hyper-parameter that changes what a run computes, as one record.

A run folder remembers its recipe; resuming with a different one is refused (see Trainer), so a
curve in metrics.jsonl always belongs to one recipe. How often to log or checkpoint does not
change the result and is therefore not part of the recipe.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nas.data import RRC_SCALE
from nas.errors import UserError


class Recipe(BaseModel):
    """AdamW + linear warmup + cosine decay (per step), label smoothing, optional distillation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(ge=1, le=100_000)
    resolution: int = Field(ge=16, le=1024)
    batch_size: int = Field(128, ge=1, description="global batch, split across DDP ranks")
    lr: float = Field(2e-3, gt=0, le=10)
    weight_decay: float = Field(0.05, ge=0, description="not applied to biases and norm weights")
    warmup_epochs: float = Field(1.0, ge=0)
    final_lr_ratio: float = Field(0.01, ge=0, le=1, description="cosine ends at lr * this")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    clip_grad: float = Field(1.0, ge=0, description="max global gradient norm; 0 disables clipping")
    crop_scale: tuple[float, float] = RRC_SCALE
    hflip: bool = True
    distill_alpha: float = Field(0.5, ge=0, le=1, description="weight of the KD term when a teacher is given")
    distill_temperature: float = Field(2.0, gt=0)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _scale_range(self) -> Recipe:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale: {self.crop_scale} must satisfy 0 < min <= max <= 1")
        return self


def make_recipe(**fields: object) -> Recipe:
    """Recipe from keyword fields, a validation failure as one UserError line."""
    try:
        return Recipe(**fields)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "recipe"
        raise UserError(f"recipe: {where}: {err['msg']} (got {err.get('input')!r})") from None
