"""Apply a selection recipe to documents that carry the signal columns, and the funnel.

Selection only compares columns with thresholds, so trying other thresholds re-runs this
stage and never the signals. Every rule is evaluated on every row: a rejected row carries
``reject_reason`` (the first rule it fails, in recipe order), ``reject_detail`` (that rule's
value against its threshold) and ``failed_rules`` (all the rules it fails).

The funnel of a selection folder counts, per rule, the documents and characters it removed
first (rules in recipe order, as a sequential filter would) and those that fail it at all.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.quality.rules import PRESETS, Recipe, Rule, resolve
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import DOCUMENTS, read_shard

STAGE_NAME = "quality_select"


def failures(table: pa.Table, rules: list[Rule]) -> np.ndarray:
    """Boolean matrix (rows x rules): row fails rule. Null signals pass."""
    fail = np.zeros((table.num_rows, len(rules)), dtype=bool)
    names = set(table.column_names)
    for k, rule in enumerate(rules):
        if rule.column not in names:
            raise ValueError(f"rule {rule.name} needs column {rule.column!r}, which the input "
                             "lacks: run the quality signals stage first")
        values = table.column(rule.column)
        bad = (pc.less(values, rule.threshold) if rule.op == "min"
               else pc.greater(values, rule.threshold))
        mask = pc.fill_null(bad, False)
        if rule.langs:
            if "lang" not in names:
                raise ValueError(f"rule {rule.name} is limited to languages {rule.langs} but "
                                 "the input has no lang column: run langid first")
            in_langs = pc.fill_null(pc.is_in(table.column("lang"),
                                             value_set=pa.array(rule.langs, pa.string())), False)
            mask = pc.and_(mask, in_langs)
        fail[:, k] = mask.to_numpy(zero_copy_only=False)
    return fail


def _value_text(values: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_floating(values.type):
        values = pc.round(values, 4)
    return pc.cast(values, pa.string()).combine_chunks()


def _details(table: pa.Table, rules: list[Rule], first: np.ndarray) -> pa.Array:
    """``column value < threshold`` of each rejected row's first failed rule."""
    out = np.empty(len(first), dtype=object)
    for k in np.unique(first):
        rule = rules[k]
        rows = np.flatnonzero(first == k)
        shown = _value_text(table.column(rule.column).take(pa.array(rows))).to_pylist()
        out[rows] = [f"{rule.column} {v} {rule.symbol} {rule.threshold:g}" for v in shown]
    return pa.array(out.tolist(), pa.string())


def select(table: pa.Table, rules: list[Rule], stage: str = STAGE_NAME) -> StageOutput:
    """Split ``table`` into kept rows and rejected rows with their reasons."""
    fail = failures(table, rules)
    rejected_mask = fail.any(axis=1)
    kept = table.filter(pa.array(~rejected_mask))
    rows = np.flatnonzero(rejected_mask)
    sub = fail[rows]
    first = sub.argmax(axis=1)
    names = np.array([r.name for r in rules], dtype=object)
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(sub.sum(axis=1), out=offsets[1:])
    failed = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                      pa.array(names[np.nonzero(sub)[1]].tolist(), pa.string()))
    rejected = table.take(pa.array(rows, pa.int64()))
    rejected = (rejected
                .append_column("reject_stage", pa.array([stage] * len(rows), pa.string()))
                .append_column("reject_reason", pa.array(names[first].tolist(), pa.string()))
                .append_column("reject_detail", _details(rejected, rules, first))
                .append_column("failed_rules", failed))
    return StageOutput(kept=kept, rejected=rejected, rows_in=table.num_rows)


def select_unit(unit: WorkUnit, cfg: Recipe) -> StageOutput:
    """One shard with signal columns in; kept rows out, the rest to ``rejected/``."""
    (path,) = unit.inputs
    return select(read_shard(path), resolve(cfg))


QUALITY_SELECT = Stage(name=STAGE_NAME, version="1", output_kind=DOCUMENTS, process=select_unit)


# --- funnel ----------------------------------------------------------------------------------


@dataclass
class FunnelRow:
    rule: str
    first_docs: int = 0
    first_chars: int = 0
    any_docs: int = 0
    any_chars: int = 0


@dataclass
class Funnel:
    """Documents and characters in, kept, and removed per rule."""

    docs_in: int = 0
    chars_in: int = 0
    kept_docs: int = 0
    kept_chars: int = 0
    rows: list[FunnelRow] = field(default_factory=list)

    def markdown(self) -> str:
        """The funnel as a markdown table (rules in recipe order)."""
        def pct(x: int, total: int) -> str:
            return f"{100 * x / total:.1f}%" if total else "-"

        lines = ["| rule | removed docs | % docs | removed chars | % chars | docs left | "
                 "failing docs (any) | failing chars (any) |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|",
                 f"| (input) | | | | | {self.docs_in:,} | | |"]
        left = self.docs_in
        for r in self.rows:
            left -= r.first_docs
            lines.append(f"| {r.rule} | {r.first_docs:,} | {pct(r.first_docs, self.docs_in)} | "
                         f"{r.first_chars:,} | {pct(r.first_chars, self.chars_in)} | {left:,} | "
                         f"{r.any_docs:,} | {r.any_chars:,} |")
        lines.append(f"| **kept** | | | | | **{self.kept_docs:,}** "
                     f"({pct(self.kept_docs, self.docs_in)} of docs, "
                     f"{pct(self.kept_chars, self.chars_in)} of chars) | | |")
        return "\n".join(lines)


def _chars(table: pa.Table) -> np.ndarray:
    """Characters per row: the q_chars signal, else the text's length (0 when unknown)."""
    if "q_chars" in table.column_names:
        values = table.column("q_chars")
    elif "text" in table.column_names:
        values = pc.utf8_length(table.column("text"))
    else:
        return np.zeros(table.num_rows, dtype=np.int64)
    return np.asarray(pc.fill_null(values, 0).to_numpy(), dtype=np.int64)


def _canonical() -> dict[str, int]:
    """Position of every preset rule (FineWeb's order, then the original C4 rules)."""
    names = [r.name for r in PRESETS["fineweb"]] + [r.name for r in PRESETS["c4"]]
    return {name: i for i, name in enumerate(names)}


def _rule_order(lists: list[list[str]]) -> list[str]:
    """One order consistent with every failed_rules list (each is in recipe order); rules the
    lists do not order go in preset order, then by name."""
    canonical = _canonical()

    def key(name: str) -> tuple[int, str]:
        return canonical.get(name, len(canonical)), name

    after: dict[str, set[str]] = {}
    before_count: Counter = Counter()
    for names in lists:
        for name in names:
            after.setdefault(name, set())
        for a, b in itertools.pairwise(names):
            if b not in after[a]:
                after[a].add(b)
                before_count[b] += 1
    ready = sorted((n for n in after if before_count[n] == 0), key=key)
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for nxt in after[name]:
            before_count[nxt] -= 1
            if before_count[nxt] == 0:
                ready.append(nxt)
        ready.sort(key=key)
    return order + sorted(set(after) - set(order), key=key)  # a cycle: mixed recipes


def funnel_from(kept: list[pa.Table], rejected: list[pa.Table],
                rule_order: list[str] | None = None) -> Funnel:
    """Funnel of kept tables and rejected tables (``reject_reason``, ``failed_rules``)."""
    f = Funnel()
    for t in kept:
        f.kept_docs += t.num_rows
        f.kept_chars += int(_chars(t).sum())
    first: dict[str, list[int]] = {}
    anyf: dict[str, list[int]] = {}
    lists: list[list[str]] = []
    for t in rejected:
        chars = _chars(t)
        reasons = t.column("reject_reason").to_pylist()
        failed = (t.column("failed_rules").to_pylist() if "failed_rules" in t.column_names
                  else [[r] for r in reasons])
        for reason, names, c in zip(reasons, failed, chars.tolist(), strict=True):
            first.setdefault(reason, [0, 0])
            first[reason][0] += 1
            first[reason][1] += c
            for name in names or [reason]:
                anyf.setdefault(name, [0, 0])
                anyf[name][0] += 1
                anyf[name][1] += c
        lists.extend(set(map(tuple, failed)))
    order = rule_order or _rule_order([list(x) for x in lists])
    order += [n for n in sorted(set(first) | set(anyf)) if n not in order]
    for name in order:
        a, b = first.get(name, [0, 0]), anyf.get(name, [0, 0])
        f.rows.append(FunnelRow(name, a[0], a[1], b[0], b[1]))
    f.docs_in = f.kept_docs + sum(r.first_docs for r in f.rows)
    f.chars_in = f.kept_chars + sum(r.first_chars for r in f.rows)
    return f


def stage_funnel(stage_dir: Path, rule_order: list[str] | None = None) -> Funnel:
    """The funnel of a selection stage folder (reads only the small columns)."""
    from schemas.dataset import shard_paths

    def small(path: Path, names: list[str]) -> pa.Table:
        table = read_shard(path)
        cols = [c for c in names if c in table.column_names]
        if "q_chars" not in cols and "text" in table.column_names:
            cols.append("text")
        return table.select(cols)

    kept = [small(p, ["q_chars"]) for p in shard_paths(stage_dir)]
    rejected = [small(p, ["q_chars", "reject_reason", "failed_rules"])
                for p in shard_paths(stage_dir, rejected=True)]
    return funnel_from(kept, rejected, rule_order)


def funnel_png(funnel: Funnel, title: str = "quality selection funnel") -> bytes:
    """A horizontal bar chart of documents removed per rule (first failed and any), as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = funnel.rows
    height = max(2.5, 0.28 * len(rows) + 1.2)
    fig = Figure(figsize=(7.5, height), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r.any_docs for r in rows], height=0.4, color="#c9d6e8",
            label="fail the rule (any)")
    ax.barh(y + 0.2, [r.first_docs for r in rows], height=0.4, color="#3b6ea8",
            label="removed by it first")
    ax.set_yticks(y, [r.rule for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("documents")
    kept = f"{funnel.kept_docs:,} of {funnel.docs_in:,} documents kept"
    ax.set_title(f"{title}\n{kept}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()
