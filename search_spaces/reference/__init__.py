"""The reference zoo: published models of the five families (and calibration CNNs) as ArchConfig
JSON files, each with a `meta.published` block of the paper's figures."""
from __future__ import annotations

import os
from pathlib import Path

from nas.arch import ArchConfig, load_arch
from nas.builder import build_model
from nas.errors import UserError
from nas.profile import deploy_counts, profile_arch

ZOO_DIR = Path(__file__).parent


def zoo_names() -> list[str]:
    return sorted(p.stem for p in ZOO_DIR.glob("*.json"))


def zoo_path(name: str) -> Path:
    path = ZOO_DIR / f"{name}.json"
    if not path.is_file():
        raise UserError(f"{name}: not a file and not a reference model (known: {', '.join(zoo_names())})")
    return path


def load_zoo(name: str) -> ArchConfig:
    return load_arch(zoo_path(name))


def resolve_arch(ref: str | os.PathLike[str]) -> ArchConfig:
    """What a user's ARCH argument names: an ArchConfig JSON file, or a reference-zoo model by
    name (`repvit_m0_9`), wherever a command takes an architecture."""
    path = Path(ref)
    if path.suffix != ".json" and not path.exists():
        return load_zoo(str(ref))
    return load_arch(path)


def load_zoo_scaled(name: str, resolution: int, num_classes: int) -> ArchConfig:
    """A zoo model for another dataset, by one rule for all: the same network, fed `resolution` px,
    with a `num_classes`-way classifier (how the search plots and the headline compare them)."""
    return load_zoo(name).model_copy(update={"resolution": resolution, "num_classes": num_classes})


def fidelity(name: str) -> dict:
    """Our params/FLOPs of a zoo model against its published figures (relative errors), and the
    same in the RepViT deploy convention (`params_deploy`, `flops_deploy`: every BN folded)."""
    arch = load_zoo(name)
    pub = arch.meta.get("published", {})
    model = build_model(arch)
    ours = profile_arch(arch, model)
    ours["params_deploy"], ours["flops_deploy"] = deploy_counts(model, arch.resolution)
    row = {"name": name, "families": sorted({s.block for s in arch.stages}), "resolution": arch.resolution,
           **ours, "top1": pub.get("top1"), "paper": pub.get("paper")}
    for key, pub_key in (("params", "params_m"), ("flops", "flops_m")):
        if pub.get(pub_key):
            row[f"{key}_published"] = pub[pub_key] * 1e6
            for count in (key, f"{key}_deploy"):
                row[f"{count}_err"] = ours[count] / (pub[pub_key] * 1e6) - 1
    return row
