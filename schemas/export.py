"""Export record kinds as JSON, so code in other languages can read and check our shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas.kinds import KINDS, RecordKind


def type_to_json(dtype: pa.DataType) -> Any:
    """A small, language-neutral description of an Arrow type."""
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return {"list": type_to_json(dtype.value_type)}
    if pa.types.is_struct(dtype):
        return {"struct": [{"name": f.name, "type": type_to_json(f.type),
                            "nullable": f.nullable} for f in dtype]}
    if pa.types.is_timestamp(dtype):
        return {"timestamp": {"unit": dtype.unit, "tz": dtype.tz}}
    return str(dtype)


def kind_to_json(kind: RecordKind) -> dict[str, Any]:
    return {
        "name": kind.name,
        "version": kind.version,
        "doc": kind.doc,
        "allow_extra_columns": kind.allow_extra,
        "compressed": kind.compress,
        "columns": [
            {"name": c.name, "types": [type_to_json(t) for t in c.types],
             "nullable": c.nullable, "optional": c.optional, "doc": c.doc}
            for c in kind.columns
        ],
    }


def export_json(out_dir: Path) -> list[Path]:
    """Write ``<kind>.schema.json`` for every kind; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS.values():
        path = out_dir / f"{kind.name}.schema.json"
        path.write_text(json.dumps(kind_to_json(kind), indent=2) + "\n")
        written.append(path)
    return written
