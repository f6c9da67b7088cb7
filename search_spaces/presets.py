"""The named search spaces (presets), and any space as plain data.

A supernet, a predictor or a bench is only meaningful together with the space it was made on, so
the space travels with it as a JSON-able dict (in run.json, checkpoints, predictor files, bench
plans; no pickles: checkpoints load with weights_only=True) and is rebuilt from it, never guessed.

Presets:
  hybrid  the full space of search_spaces/hybrid.py (64..224 px).
  proxy   a subspace of hybrid sized for the 64 px proxy dataset on a CPU: one resolution (64 px,
          the data's own), the narrower widths and fewer blocks. Used by the ranking benchmark,
          whose supernet must train within 2 h on 2 CPU cores, and by the default accuracy
          predictor. Every choice is one of hybrid's, so the shipped latency tables cover it.
  tiny    a toy space for tests (every family still reachable, 32 px, a few channels).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from nas.errors import ParameterError, UserError, read_json
from search_spaces.hybrid import ATTENTION_FAMILIES, CONV_FAMILIES, HybridSpace, StageChoices

PROXY_NUM_CLASSES = 10  # the shared proxy dataset's classes: the shipped tables hold heads for it


def _proxy(num_classes: int) -> HybridSpace:
    return HybridSpace(
        resolutions=(64,), head_channels=(0, 512), token_dims=(64, 128),
        stages=(StageChoices(CONV_FAMILIES, depths=(1, 2), widths=(16, 24, 32)),
                StageChoices(CONV_FAMILIES, depths=(1, 2), widths=(32, 48, 64)),
                StageChoices(("repvit",) + ATTENTION_FAMILIES, depths=(1, 2, 3), widths=(48, 64, 96, 128)),
                StageChoices(("repvit",) + ATTENTION_FAMILIES, depths=(1, 2), widths=(96, 128, 192))),
        num_classes=num_classes, name="proxy")


def _tiny(num_classes: int) -> HybridSpace:
    return HybridSpace(
        resolutions=(32, 48), stem_channels=(8, 16), token_counts=(2, 3), token_dims=(16, 32),
        head_channels=(0, 32),
        stages=(StageChoices(CONV_FAMILIES, depths=(1, 2), widths=(8, 16), expands=(2.0, 3.0)),
                StageChoices(CONV_FAMILIES, depths=(1, 2), widths=(16, 24), expands=(2.0, 3.0)),
                StageChoices(("repvit",) + ATTENTION_FAMILIES, depths=(1, 2), widths=(16, 32),
                             expands=(2.0, 3.0), mlp_ratios=(1.0, 2.0)),
                StageChoices(("repvit",) + ATTENTION_FAMILIES, depths=(1, 2), widths=(32, 48),
                             expands=(2.0, 3.0), mlp_ratios=(1.0, 2.0))),
        num_classes=num_classes, name="tiny")


PRESETS = {"hybrid": lambda n: HybridSpace(num_classes=n), "proxy": _proxy, "tiny": _tiny}


def space_to_dict(space: HybridSpace) -> dict[str, Any]:
    """JSON-able form (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(space)))


def space_from_dict(data: Any, source: str = "space") -> HybridSpace:
    """Inverse of space_to_dict; a malformed description is a one-line UserError."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object describing a search space")
    fields = {f.name for f in dataclasses.fields(HybridSpace)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise UserError(f"{source}: unknown field {unknown[0]!r} (expected some of {sorted(fields)})")
    try:
        values = {k: tuple(v) if isinstance(v, list) and k != "stages" else v for k, v in data.items()}
        if "stages" in values:
            values["stages"] = tuple(
                StageChoices(**{k: tuple(v) if isinstance(v, list) else v for k, v in st.items()})
                for st in data["stages"])
        space = HybridSpace(**values)
        space.largest(), space.smallest()  # validates every extreme member
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise UserError(f"{source}: not a valid search space ({exc})") from None
    return space


def resolve_space(ref: str, num_classes: int) -> HybridSpace:
    """A preset name (hybrid, proxy, tiny) or a JSON file in space_to_dict's form, with the data's
    class count."""
    if ref in PRESETS:
        return PRESETS[ref](num_classes)
    path = Path(ref)
    if not path.exists():
        raise ParameterError("space", f" {ref}: neither a preset ({', '.join(PRESETS)}) nor an existing JSON file")
    data = read_json(path, "JSON space description")
    if isinstance(data, dict):
        data = {**data, "num_classes": num_classes}
    return space_from_dict(data, str(path))
