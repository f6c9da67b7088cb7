"""Regenerate the published JSON Schema: `python -m nas.arch.write_schema`."""
from __future__ import annotations

import json
from pathlib import Path

from nas.arch.schema import json_schema
from nas.atomic import atomic_write_text

SCHEMA_FILE = Path(__file__).with_name("arch.schema.json")

if __name__ == "__main__":
    atomic_write_text(SCHEMA_FILE, json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {SCHEMA_FILE}")
