"""The ArchConfig record: schema, validation, canonical form, hashing, files."""
from nas.arch.io import load_arch, save_arch
from nas.arch.schema import SCHEMA_ID, ArchConfig, HeadSpec, StemSpec, loads_arch, parse_arch
from nas.arch.stages import BLOCK_FAMILIES

__all__ = ["SCHEMA_ID", "ArchConfig", "HeadSpec", "StemSpec", "BLOCK_FAMILIES", "load_arch",
           "save_arch", "loads_arch", "parse_arch"]
