"""Schema validation and conforming, with errors that name the shard, the column and the problem."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from schemas.kinds import RecordKind


@dataclass(frozen=True)
class SchemaProblem:
    column: str
    problem: str

    def __str__(self) -> str:
        return f"column {self.column!r}: {self.problem}"


class SchemaMismatch(ValueError):
    """Raised when a table does not match its record kind; carries every problem found."""

    def __init__(self, shard: str, kind: RecordKind, problems: list[SchemaProblem]):
        self.shard = shard
        self.kind = kind
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"shard {shard}: does not match schema {kind.name} v{kind.version}:\n{lines}")


def _type_name(types: tuple[pa.DataType, ...]) -> str:
    return " or ".join(str(t) for t in types)


def schema_problems(schema: pa.Schema, kind: RecordKind) -> list[SchemaProblem]:
    """Problems visible from the schema alone: missing, mistyped or unexpected columns."""
    problems: list[SchemaProblem] = []
    names = schema.names
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(SchemaProblem(dup, "appears more than once"))
    for col in kind.columns:
        if col.name not in names:
            if not col.optional:
                problems.append(SchemaProblem(col.name, f"missing (expected {col.type})"))
            continue
        found = schema.field(col.name).type
        if not col.accepts(found):
            problems.append(SchemaProblem(
                col.name, f"expected {_type_name(col.types)}, found {found}"))
    if not kind.allow_extra:
        for name in names:
            if kind.column(name) is None:
                problems.append(SchemaProblem(name, f"not a column of {kind.name}"))
    return problems


def table_problems(table: pa.Table, kind: RecordKind) -> list[SchemaProblem]:
    """Schema problems plus value problems (nulls where the kind forbids them)."""
    problems = schema_problems(table.schema, kind)
    for col in kind.columns:
        if col.nullable or col.name not in table.column_names:
            continue
        nulls = table.column(col.name).null_count
        if nulls:
            problems.append(SchemaProblem(col.name, f"{nulls} null value(s) in a non-null column"))
    return problems


def validate_table(table: pa.Table, kind: RecordKind, shard: str = "<table>") -> None:
    """Raise ``SchemaMismatch`` naming the shard and every bad column, or return quietly."""
    problems = table_problems(table, kind)
    if problems:
        raise SchemaMismatch(shard, kind, problems)


def conform(table: pa.Table, kind: RecordKind, shard: str = "<table>") -> pa.Table:
    """Validate, then order columns canonically (kind columns first, extras after, as given).

    Columns are never cast silently: a wrong type is a bug upstream and is reported. The one
    exception is lossless: an all-null column of Arrow's ``null`` type (what inference gives
    for ``[None, None]``) takes the kind's type when the column is nullable.
    The schema is tagged with the kind's name and version so a shard describes itself.
    """
    for i, name in enumerate(table.column_names):
        col = kind.column(name)
        if col is not None and col.nullable and pa.types.is_null(table.schema.field(i).type):
            table = table.set_column(i, name, pa.nulls(table.num_rows, col.type))
    validate_table(table, kind, shard)
    declared = [c.name for c in kind.columns if c.name in table.column_names]
    extras = [n for n in table.column_names if kind.column(n) is None]
    ordered = table.select(declared + extras)
    fields = []
    for name in ordered.column_names:
        col = kind.column(name)
        nullable = col.nullable if col is not None else True
        fields.append(pa.field(name, ordered.schema.field(name).type, nullable=nullable))
    schema = pa.schema(fields, metadata={"record_kind": kind.name, "kind_version": kind.version})
    return pa.Table.from_arrays(ordered.columns, schema=schema)


def empty_table(kind: RecordKind, include_optional: bool = False) -> pa.Table:
    """A zero-row table of a kind, for stages that keep or reject nothing."""
    cols = [c for c in kind.columns if include_optional or not c.optional]
    schema = pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in cols])
    return schema.empty_table()
