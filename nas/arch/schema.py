"""ArchConfig: the one record that travels from the search space to the exported model.

It is data, never code: JSON in, validated by pydantic, JSON out. The canonical form (defaults
filled, keys sorted, no whitespace) of everything except `name` and `meta` is what identifies an
architecture, so two files that build the same network hash the same.
"""
from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from nas.arch.stages import (
    EXACT_INT,
    Activation,
    FormerStage,
    LeViTStage,
    LGLStage,
    MobileViTStage,
    MV2Stage,
    RepViTStage,
)
from nas.atomic import path_name_problem
from nas.errors import UserError

SCHEMA_ID = "hybrid-nas/arch/v1"
MAX_NESTING = 64  # JSON levels an ArchConfig file may nest (meta included); real ones use about 5

StageSpec = Annotated[
    MV2Stage | RepViTStage | MobileViTStage | LGLStage | LeViTStage | FormerStage,
    Field(discriminator="block"),
]


class StemSpec(BaseModel):
    """`depth` 3x3 conv-BN-act layers, the first `strides` of them stride 2 (early convolutions
    as in LeViT/RepViT). Channels double layer by layer up to `channels`: a depth-4 stem to 128
    runs 16, 32, 64, 128 as LeViT's does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    depth: StrictInt = Field(1, ge=1, le=4)
    channels: StrictInt = Field(16, ge=8, le=256)
    strides: StrictInt = Field(ge=0, le=4, description="how many leading layers have stride 2 (default: all)")
    kernel: Annotated[Literal[3, 4], EXACT_INT] = Field(3, description="4: a single 4x4 stride-4 patchify conv "
                                                                     "(EdgeViT)")
    act: Activation = "hswish"
    last_act: StrictBool = Field(True, description="False: no activation after the last conv (LeViT, RepViT)")

    @model_validator(mode="before")
    @classmethod
    def _default_strides(cls, data: Any) -> Any:
        if isinstance(data, dict) and "strides" not in data:
            return {**data, "strides": data.get("depth", 1)}
        return data

    @model_validator(mode="after")
    def _strides_fit(self) -> StemSpec:
        if self.strides > self.depth:
            raise ValueError(f"strides: {self.strides} is more than depth ({self.depth})")
        if self.kernel == 4 and self.depth != 1:
            raise ValueError("kernel: 4 (patchify) needs depth 1")
        return self


# Fields added to a record after schema v1 was published, with their defaults. At its default such
# a field is left out of the canonical form (`arch_hash`, latency-unit keys): every architecture
# written before keeps its hash, and the bench rows, tables and run folders keyed by it stay valid.
LATER_DEFAULTS: dict[str, dict[str, Any]] = {
    "head": {"groups": 1, "pool_act": "none", "hidden_norm": "none", "hidden_act": None},
    "former": {"shuffle_after_dw": False}}  # a stage record: keyed by its `block`


def stage_signature(stage: dict[str, Any]) -> dict[str, Any]:
    """A stage's canonical fields (its JSON form less the fields added after v1 at their default)."""
    later = LATER_DEFAULTS.get(stage["block"], {})
    return {k: v for k, v in stage.items() if not (k in later and v == later[k])}


class HeadSpec(BaseModel):
    """Classifier: optional 1x1 conv-BN-act to `channels`, global average pool (concatenated with
    the first global token when the network has Mobile-Former tokens), optional hidden FC with
    activation, optional BatchNorm before the classifier (LeViT/RepViT), optional distillation
    classifier whose logits are averaged with the main one at inference (DeiT/LeViT/RepViT)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: StrictInt = Field(0, ge=0, le=4096, description="0: no 1x1 conv before pooling")
    hidden: StrictInt = Field(0, ge=0, le=4096, description="0: no hidden FC after pooling")
    act: Activation = "hswish"
    norm: Literal["none", "bn", "ln"] = "none"
    distill: StrictBool = False
    dropout: StrictFloat = Field(0.0, ge=0.0, lt=1.0)
    # Added after v1 was published (see LATER_DEFAULTS): the official Mobile-Former head,
    # [shuffle] grouped 1x1 conv-BN-ReLU6 -> pool -> h_swish -> concat token -> FC-BN1d-h_swish -> FC
    groups: StrictInt = Field(1, ge=1, le=64, description="groups of the 1x1 conv; > 1: channels shuffled "
                                                          "before it (Mobile-Former-26M: 4)")
    pool_act: Activation | Literal["none"] = Field("none", description="activation after pooling, before the "
                                                                      "token is joined (Mobile-Former: hswish)")
    hidden_norm: Literal["none", "bn"] = Field("none", description="BatchNorm1d between the hidden FC and its "
                                                                   "activation (Mobile-Former)")
    hidden_act: Activation | None = Field(None, description="the hidden FC's activation; null: `act` "
                                                            "(Mobile-Former: hswish after a ReLU6 conv)")

    @model_validator(mode="after")
    def _groups_divide(self) -> HeadSpec:
        if self.groups > 1 and (not self.channels or self.channels % self.groups):
            raise ValueError(f"groups {self.groups}: needs a 1x1 conv (channels > 0) whose width it divides")
        return self

    def signature(self) -> dict[str, Any]:
        """The canonical fields: every field, less those added after v1 that hold their default,
        so that a head written before they existed keeps its arch hash and latency-unit key."""
        later = LATER_DEFAULTS["head"]
        return {k: v for k, v in self.model_dump(mode="json").items() if not (k in later and v == later[k])}


class ArchConfig(BaseModel):
    """A whole network. See DESIGN.md for the data flow it travels through."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["hybrid-nas/arch/v1"] = Field(SCHEMA_ID, alias="schema")
    name: str = Field("unnamed", min_length=1, max_length=128,
                      description="also a file and folder name (runs/<name>): no '/', '\\', '..' or control characters")
    resolution: StrictInt = Field(ge=32, le=1024)
    num_classes: StrictInt = Field(1000, ge=2, le=100_000)
    stem: StemSpec = StemSpec(depth=1, channels=16, strides=1)
    stages: list[StageSpec] = Field(min_length=1, max_length=12)
    head: HeadSpec = HeadSpec()
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_is_a_file_name(cls, name: str) -> str:
        problem = path_name_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @property
    def uses_tokens(self) -> bool:
        return any(s.block == "former" for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """Canonical dict: every default filled in, aliases used (`schema`)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent) + ("\n" if indent else "")

    def arch_hash(self) -> str:
        """SHA-256 (first 16 hex) of the canonical form without `name` and `meta`."""
        body = {k: v for k, v in self.to_dict().items() if k not in ("name", "meta")}
        body["head"] = self.head.signature()
        body["stages"] = [stage_signature(s) for s in body["stages"]]
        blob = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_meta(self, **updates: Any) -> ArchConfig:
        return self.model_copy(update={"meta": {**self.meta, **updates}})


_FAMILY_TAGS = {"mv2", "repvit", "mobilevit", "lgl", "levit", "former"}


def _loc(loc: tuple[Any, ...]) -> str:
    """('stages', 2, 'lgl', 'sample_rate') -> 'stages[2].sample_rate' (the union tag is noise)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i > 0 and isinstance(loc[i - 1], int) and part in _FAMILY_TAGS:
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def _describe(err: dict[str, Any]) -> str:
    """One pydantic error as 'path: what was wrong, what is allowed'."""
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    if kind == "missing":
        return f"{_loc(err['loc'])}: required field is missing"
    if kind == "extra_forbidden":
        return f"{_loc(err['loc'])}: unknown field"
    if kind == "literal_error":
        allowed = str(ctx.get("expected", "")).replace(" or ", ", ")
        return f"{_loc(err['loc'])}: {_short(value)} is not one of [{allowed}]"
    if kind == "value_error":  # our own validators say 'field: problem'
        message = str(ctx.get("error", err["msg"]))
        field, _, problem = message.partition(": ")
        if problem and field.isidentifier():
            return f"{_loc(err['loc'])}.{field}: {problem}"
        return f"{_loc(err['loc'])}: {message}"
    if kind == "union_tag_invalid":
        return (f"{_loc(err['loc'])}.{ctx.get('discriminator', 'block').strip(chr(39))}: "
                f"{ctx.get('tag')!r} is not one of [{ctx.get('expected_tags')}]")
    if kind == "union_tag_not_found":
        return f"{_loc(err['loc'])}.block: required field is missing (one of {sorted(_FAMILY_TAGS)})"
    return f"{_loc(err['loc'])}: {err['msg'][0].lower() + err['msg'][1:]} (got {_short(value)})"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _too_deep(data: Any, limit: int) -> bool:
    """Whether `data` nests lists/dicts more than `limit` levels (iteratively: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, (dict, list)):
            if level > limit:
                return True
            stack.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def parse_arch(data: Any, source: str = "arch") -> ArchConfig:
    """Validate a decoded JSON value; raise UserError naming the first wrong field."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object, got {type(data).__name__}")
    if _too_deep(data, MAX_NESTING):
        raise UserError(f"{source}: nested more than {MAX_NESTING} levels deep; not an architecture")
    schema = data.get("schema", SCHEMA_ID)
    if schema != SCHEMA_ID:
        raise UserError(f"{source}: schema: {schema!r} is not supported (expected {SCHEMA_ID!r})")
    try:
        return ArchConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"{source}: {_describe(errors[0])}{more}") from None


def loads_arch(text: str, source: str = "arch") -> ArchConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise UserError(f"{source}: nested more than {MAX_NESTING} levels deep; not an architecture") from None
    return parse_arch(data, source)


def json_schema() -> dict[str, Any]:
    """The published JSON Schema (nas/arch/arch.schema.json is this, written by a test helper)."""
    schema = ArchConfig.model_json_schema(by_alias=True)
    schema["$id"] = SCHEMA_ID
    return schema
