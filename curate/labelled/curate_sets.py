"""Curating labelled sets: dedup, language and quality filters, train/validation split, and a
hook for document transforms (PII redaction, decontamination).

Everything here reuses the document stages through *views*: a labelled shard rendered as a
``documents`` table (``id`` = example id, ``text`` = the rendered conversation), so dedup,
language ID and any future document transform work on labelled data unchanged.

- **dedup** (:func:`run_labelled_dedup`): the dedup pipeline's signatures, buckets and
  clusters phases run on the view; its clusters are then applied to the labelled shards
  (``curate.dedup.remove.apply_clusters``), so kept examples get ``dup_cluster`` /
  ``dup_cluster_size`` and removed ones go to ``rejected/`` as ``exact_duplicate`` or
  ``near_duplicate`` with ``duplicate_of``.
- **filter** (``sft_filter`` / ``preference_filter``): lid.176 on the user + assistant text
  (``lang``, ``lang_score`` columns; threshold and allow-list as in ``curate langid``), and
  length / repetition rules on the response.
- **split** (``sft_split`` / ``preference_split``): ``split`` = train / validation / test from
  a salted 64-bit hash of the id (or of the prompt, so every example of one prompt lands in
  the same split); the same ids, salt and fractions always give the same split.
- **transforms** (:func:`apply_documents_transform`): the hook for PII redaction and
  decontamination, which are written elsewhere; see its docstring.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from curate.config import StageConfig
from curate.dedup.config import DedupConfig
from curate.dedup.pipeline import (
    REMOVAL_CONFIG,
    DedupLayout,
    DedupReport,
    run_global,
    run_signatures,
)
from curate.dedup.remove import apply_clusters
from curate.labelled.layouts import Turns, concat
from curate.labelled.validate import PARTS, kind_of, split_rejected
from curate.runner import RunReport, Stage, StageOutput, WorkUnit, plan_shards, run_stage
from schemas import DOCUMENTS, PREFERENCE, SFT, read_manifest, read_shard

Render = Literal["conversation", "prompt"]
LABELLED_KINDS = ("sft", "preference")


def stage_kind(stage_dir: Path) -> str:
    """``sft`` or ``preference``, from a stage folder's manifest."""
    manifest = read_manifest(Path(stage_dir))
    if manifest is None:
        raise FileNotFoundError(f"{stage_dir} is not a stage folder (no _manifest.json); "
                                "ingest raw files with `curate labelled ingest` first")
    if manifest.kind not in LABELLED_KINDS:
        raise ValueError(f"{stage_dir} holds {manifest.kind} shards, expected sft or preference")
    return manifest.kind


def parts(table: pa.Table) -> dict[str, Turns]:
    """The table's conversations: ``messages``, or ``prompt``/``chosen``/``rejected``."""
    return {p: Turns.from_lists(table.column(p)) for p in PARTS[kind_of(table)]}


# --- views -----------------------------------------------------------------------------------


def render(table: pa.Table, what: Render = "conversation") -> pa.Array:
    """One text per example: ``role: content`` turns separated by blank lines.

    ``prompt`` renders what is asked (SFT: system and user turns; preference: the prompt), so
    dedup or a split on it groups every answer to the same question.
    """
    p = parts(table)
    if "messages" in p:
        turns = p["messages"]
        return (turns.keep_roles(("system", "user")) if what == "prompt" else turns).join()
    prompt = p["prompt"].join()
    if what == "prompt":
        return prompt
    return pc.binary_join_element_wise(
        prompt, pc.binary_join_element_wise("[chosen]", p["chosen"].join(), "\n"),
        pc.binary_join_element_wise("[rejected]", p["rejected"].join(), "\n"), "\n\n")


def documents_view(table: pa.Table, what: Render = "conversation") -> pa.Table:
    """A ``documents`` table of one row per example (``id`` = example id, ``text`` =
    the rendered conversation), in the same row order."""
    n = table.num_rows
    return pa.table({"id": table.column("id").combine_chunks(), "text": render(table, what),
                     "url": pa.nulls(n, pa.string()),
                     "source": table.column("source").combine_chunks()})


def language_text(table: pa.Table) -> pa.Array:
    """The user and assistant text of each example (preference: prompt + chosen)."""
    p = parts(table)
    turns = p["messages"] if "messages" in p else concat(p["prompt"], p["chosen"])
    return turns.keep_roles(("user", "assistant")).join("\n", with_roles=False)


def response_text(table: pa.Table) -> pa.Array:
    """What the model learns to write: assistant turns (preference: of the chosen answer)."""
    p = parts(table)
    turns = p["messages"] if "messages" in p else p["chosen"]
    return turns.keep_roles(("assistant",)).join("\n", with_roles=False)


def prompt_text(table: pa.Table) -> pa.Array:
    """What the user asked: user turns (preference: of the prompt)."""
    p = parts(table)
    turns = p["messages"] if "messages" in p else p["prompt"]
    return turns.keep_roles(("user",)).join("\n", with_roles=False)


class ViewConfig(StageConfig):
    render: Render = "conversation"


def _view_unit(unit: WorkUnit, cfg: ViewConfig) -> StageOutput:
    (path,) = unit.inputs
    table = read_shard(path)
    return StageOutput(kept=documents_view(table, cfg.render), rejected=pa.table({}),
                       rows_in=table.num_rows)


VIEW = Stage(name="labelled_view", version="1", output_kind=DOCUMENTS, process=_view_unit)


# --- dedup -----------------------------------------------------------------------------------


class LabelledDedupConfig(DedupConfig):
    """The dedup settings (see ``curate dedup``) plus what text an example is compared by."""

    url: bool = False
    """Examples have no URLs."""
    render: Render = "conversation"
    """Compare whole conversations, or only the prompts (one answer per question)."""


def _dedup_unit(unit: WorkUnit, cfg: StageConfig) -> StageOutput:
    """Inputs: the labelled shard, then the clusters shard of its view."""
    labelled, clusters = unit.inputs
    table = read_shard(labelled)
    out = apply_clusters(table, read_shard(clusters))
    rejected = out.rejected
    if rejected.num_rows:
        i = rejected.schema.get_field_index("reject_stage")
        rejected = rejected.set_column(i, "reject_stage", pa.repeat(
            pa.scalar(f"{kind_of(table)}_dedup"), rejected.num_rows))
    return StageOutput(kept=out.kept, rejected=rejected, rows_in=out.rows_in)


SFT_DEDUP = Stage(name="sft_dedup", version="1", output_kind=SFT, process=_dedup_unit)
PREFERENCE_DEDUP = Stage(name="preference_dedup", version="1", output_kind=PREFERENCE,
                         process=_dedup_unit)
DEDUP_STAGES = {"sft": SFT_DEDUP, "preference": PREFERENCE_DEDUP}


@dataclass
class LabelledDedupReport:
    """The view, the dedup phases and the labelled removal, for the CLI summary."""

    kind: str
    view: RunReport | None = None
    dedup: DedupReport = field(default_factory=DedupReport)

    @property
    def ok(self) -> bool:
        return self.view is not None and self.view.ok and self.dedup.ok

    def summary(self) -> str:
        lines = []
        if self.view is not None:
            v = self.view
            lines.append(f"view:        {v.rows_in:,} {self.kind} examples rendered as documents "
                         f"-> {v.output_dir}")
            lines += [f"  FAILED (view) {u}: {e}" for u, e in sorted(v.failures.items())]
        return "\n".join([*lines, self.dedup.summary()])


def dedup_layout(output_dir: Path, kind: str) -> DedupLayout:
    """Where each phase writes: ``view/``, ``signatures/``, ``buckets/``, ``clusters/`` and
    the deduplicated examples in ``<kind>/`` (``sft/`` or ``preference/``)."""
    root = Path(output_dir)
    return DedupLayout(root / "signatures", root / "buckets", root / "clusters", root / kind)


def run_labelled_dedup(input_dir: Path, output_dir: Path, cfg: LabelledDedupConfig,
                       workers: int = 1, progress: bool = False, force: bool = False,
                       ) -> LabelledDedupReport:
    """Exact and near-duplicate removal over an ``sft`` or ``preference`` stage folder."""
    kind = stage_kind(input_dir)
    units = plan_shards(Path(input_dir))
    if not units:
        raise ValueError(f"no shards found under {input_dir}")
    layout = dedup_layout(output_dir, kind)
    report = LabelledDedupReport(kind)
    t = time.perf_counter()
    report.view = run_stage(VIEW, units, Path(output_dir) / "view", ViewConfig(render=cfg.render),
                            workers=workers, progress=progress, force=force)
    if not report.view.ok:
        return report
    view_units = plan_shards(Path(output_dir) / "view")
    dedup = report.dedup
    dedup.signatures = run_signatures(view_units, layout, cfg, workers, progress, force)
    dedup.phase_seconds["signatures"] = time.perf_counter() - t
    if not dedup.signatures.ok:
        return report
    run_global(view_units, layout, cfg, dedup, force=force)
    t = time.perf_counter()
    removal = [WorkUnit(u.name, (u.inputs[0], layout.clusters / u.name), u.base) for u in units]
    dedup.removal = run_stage(DEDUP_STAGES[kind], removal, layout.documents, REMOVAL_CONFIG,
                              workers=workers, progress=progress, force=force)
    dedup.phase_seconds["removal"] = time.perf_counter() - t
    return report


# --- language and quality --------------------------------------------------------------------


class LabelledFilterConfig(StageConfig):
    """Language ID and simple quality rules for labelled examples."""

    langid: bool = True
    """Tag ``lang`` / ``lang_score`` with lid.176 on the user + assistant text."""
    languages: list[str] = []
    """Allow-list of language codes (``en``, ``de``); empty = all."""
    lang_threshold: float = Field(0.0, ge=0.0, le=1.0)
    """Minimum language score. 0 by default: short turns and code score low even when they
    are fine, so the allow-list is the usual filter; raise it for prose-only sets."""
    model_path: str | None = None
    max_lang_chars: int = Field(2000, ge=1)
    batch_size: int = Field(1024, ge=1)
    min_prompt_words: int = Field(1, ge=0)
    min_response_words: int = Field(1, ge=0)
    max_response_words: int | None = Field(None, ge=1)
    min_unique_word_ratio: float = Field(0.0, ge=0.0, le=1.0)
    """Distinct words / words of the response, applied from 20 words on: a low ratio flags
    a degenerate, looping answer (0.3 is a reasonable value)."""


UNIQUE_RATIO_MIN_WORDS = 20


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, values) if i >= 0 else table.append_column(name, values)


def _words(text: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.count_substring_regex(text, r"\S+"), 0), dtype=np.int64)


def quality_reasons(table: pa.Table, cfg: LabelledFilterConfig) -> tuple[pa.Array, pa.Array]:
    """(reason, detail) per row from the length and repetition rules (null = keep)."""
    n = table.num_rows
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)

    def add(mask: np.ndarray, why: str, text: Callable[[np.ndarray], list[str]]) -> None:
        rows = np.flatnonzero(mask & (reason == None))  # noqa: E711
        if len(rows):
            reason[rows] = why
            detail[rows] = text(rows)

    prompt_words = _words(prompt_text(table))
    response = response_text(table)
    words = _words(response)
    add(prompt_words < cfg.min_prompt_words, "prompt_too_short",
        lambda r: [f"{w} prompt words < {cfg.min_prompt_words}" for w in prompt_words[r]])
    add(words < cfg.min_response_words, "response_too_short",
        lambda r: [f"{w} response words < {cfg.min_response_words}" for w in words[r]])
    if cfg.max_response_words is not None:
        add(words > cfg.max_response_words, "response_too_long",
            lambda r: [f"{w} response words > {cfg.max_response_words}" for w in words[r]])
    if cfg.min_unique_word_ratio > 0:
        tokens = pl.from_arrow(response).str.to_lowercase().str.extract_all(r"\w+")
        distinct = tokens.list.n_unique().fill_null(0).to_numpy()
        count = tokens.list.len().fill_null(0).to_numpy()
        ratio = np.where(count > 0, distinct / np.maximum(count, 1), 1.0)
        add((count >= UNIQUE_RATIO_MIN_WORDS) & (ratio < cfg.min_unique_word_ratio),
            "repetitive_response",
            lambda r: [f"{d} distinct of {c} words ({x:.2f} < {cfg.min_unique_word_ratio})"
                       for d, c, x in zip(distinct[r], count[r], ratio[r], strict=True)])
    return pa.array(reason.tolist(), pa.string()), pa.array(detail.tolist(), pa.string())


def filter_examples(table: pa.Table, cfg: LabelledFilterConfig, stage: str,
                    model=None) -> StageOutput:
    """Tag languages, then keep the rows that pass the language and quality rules."""
    reason, detail = quality_reasons(table, cfg)
    if cfg.langid:
        from curate.langid import LangIdConfig, identify, load_model, reject_reasons

        model = model if model is not None else load_model(cfg.model_path)
        langs, scores = identify(language_text(table), model, cfg.max_lang_chars,
                                 cfg.batch_size)
        lang, score = pa.array(langs, pa.string()), pa.array(scores, pa.float32())
        table = _set(_set(table, "lang", lang), "lang_score", score)
        lid_cfg = LangIdConfig(threshold=cfg.lang_threshold, languages=cfg.languages)
        lang_reason = reject_reasons(lang, score, lid_cfg)
        shown = pc.cast(pc.round(score, 2), pa.string())
        low = pc.binary_join_element_wise(lang, shown, "<", f"{cfg.lang_threshold:g}", " ")
        banned = pc.binary_join_element_wise(lang, "not in allow-list",
                                             ",".join(sorted(cfg.languages)), " ")
        lang_detail = pc.if_else(pc.equal(lang_reason, "low_language_confidence"), low, banned)
        first = pc.is_valid(lang_reason)
        detail = pc.if_else(first, lang_detail, detail)
        reason = pc.coalesce(lang_reason, reason)
    return split_rejected(table, reason, detail, stage)


def _filter_unit(unit: WorkUnit, cfg: LabelledFilterConfig) -> StageOutput:
    (path,) = unit.inputs
    table = read_shard(path)
    return filter_examples(table, cfg, f"{kind_of(table)}_filter")


SFT_FILTER = Stage(name="sft_filter", version="1", output_kind=SFT, process=_filter_unit)
PREFERENCE_FILTER = Stage(name="preference_filter", version="1", output_kind=PREFERENCE,
                          process=_filter_unit)
FILTER_STAGES = {"sft": SFT_FILTER, "preference": PREFERENCE_FILTER}


# --- split -----------------------------------------------------------------------------------


class SplitConfig(StageConfig):
    """A deterministic split by hash: the same key, salt and fractions give the same split."""

    validation_fraction: float = Field(0.05, ge=0.0, le=1.0)
    test_fraction: float = Field(0.0, ge=0.0, le=1.0)
    salt: str = "sievelm"
    """Change it to draw a different, equally deterministic split."""
    key: Literal["id", "prompt"] = "id"
    """Hash the example id, or the rendered prompt (every example of a prompt in one split,
    so a question seen in training is never in validation)."""
    keep_existing: bool = False
    """Keep a row's ``split`` when it already has one (e.g. from the source dataset)."""

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.validation_fraction + self.test_fraction > 1.0:
            raise ValueError("validation_fraction + test_fraction must be at most 1")
        return self


def hash_unit_interval(keys: pa.Array, salt: str) -> np.ndarray:
    """A float in [0, 1) per key from a salted 64-bit hash (xxh32 twice, as dedup's keys)."""
    from curate.dedup.minhash import hash_strings

    salted = pc.binary_join_element_wise(pa.scalar(salt), pc.fill_null(keys, ""), "\x1f")
    hashed = hash_strings(salted)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_labels(keys: pa.Array, cfg: SplitConfig) -> pa.Array:
    """train / validation / test per key."""
    u = hash_unit_interval(keys, cfg.salt)
    vf, tf = cfg.validation_fraction, cfg.test_fraction
    labels = np.where(u < vf, "validation", np.where(u < vf + tf, "test", "train"))
    return pa.array(labels.astype(object), pa.string())


def assign_splits(table: pa.Table, cfg: SplitConfig) -> pa.Table:
    """The table with its ``split`` column set."""
    keys = (table.column("id").combine_chunks() if cfg.key == "id"
            else render(table, "prompt"))
    labels = split_labels(keys, cfg)
    if cfg.keep_existing and "split" in table.column_names:
        labels = pc.coalesce(table.column("split").combine_chunks(), labels)
    return _set(table, "split", labels)


def _split_unit(unit: WorkUnit, cfg: SplitConfig) -> StageOutput:
    (path,) = unit.inputs
    table = read_shard(path)
    return StageOutput(kept=assign_splits(table, cfg), rejected=pa.table({}),
                       rows_in=table.num_rows)


SFT_SPLIT = Stage(name="sft_split", version="1", output_kind=SFT, process=_split_unit)
PREFERENCE_SPLIT = Stage(name="preference_split", version="1", output_kind=PREFERENCE,
                         process=_split_unit)
SPLIT_STAGES = {"sft": SFT_SPLIT, "preference": PREFERENCE_SPLIT}


def split_counts(stage_dir: Path) -> dict[str, int]:
    """Examples per split value over a stage folder's shards."""
    from schemas import shard_paths

    counts: dict[str, int] = {}
    for path in shard_paths(Path(stage_dir)):
        for item in pc.value_counts(read_shard(path, columns=["split"]).column("split")
                                    .combine_chunks()).to_pylist():
            key = item["values"] if item["values"] is not None else "(none)"
            counts[key] = counts.get(key, 0) + item["counts"]
    return dict(sorted(counts.items()))


# --- the hook for document transforms (PII redaction, decontamination) -----------------------

DocumentsTransform = Callable[[pa.Table], "pa.Table | StageOutput"]
"""A function over a ``documents`` table that returns the documents it keeps (texts may be
rewritten), or a StageOutput whose ``rejected`` rows carry ``reject_reason`` and
``reject_detail``. A document missing from what it returns is dropped."""

TURN_ID_SEPARATOR = "#"


def turns_view(table: pa.Table) -> pa.Table:
    """A ``documents`` table with one row per turn: ``id`` = ``<example id>#<part>:<turn>``
    (turn 1-based), ``text`` = the turn's content, the example's ``source``, and the columns
    ``example_id``, ``part`` (messages / prompt / chosen / rejected), ``turn`` and ``role`` so a
    transform can act on some turns only (decontaminate the prompts, say)."""
    pieces = []
    ids = table.column("id").combine_chunks()
    sources = table.column("source").combine_chunks()
    for name, turns in parts(table).items():
        rows = pa.array(turns.rows())
        pos = pc.cast(pa.array(turns.positions() + 1), pa.string())
        example = ids.take(rows)
        pieces.append(pa.table({
            "id": pc.binary_join_element_wise(example, pc.binary_join_element_wise(
                name, pos, ":"), TURN_ID_SEPARATOR),
            "text": turns.contents, "url": pa.nulls(len(rows), pa.string()),
            "source": sources.take(rows), "example_id": example,
            "part": pa.repeat(pa.scalar(name), len(rows)),
            "turn": pa.array(turns.positions() + 1, pa.int32()), "role": turns.roles}))
    return pa.concat_tables(pieces)


def apply_documents_transform(table: pa.Table, transform: DocumentsTransform, stage: str,
                              ) -> StageOutput:
    """Run a documents transform on the turns of a labelled table and carry the result back.

    This is the hook for PII redaction and decontamination (written as documents stages):
    every turn becomes one document (:func:`turns_view`); texts the transform rewrites
    replace the turns' contents; an example any of whose turns the transform drops is
    rejected as a whole, with the transform's ``reject_reason`` (``dropped_by_transform``
    when it gave none) and the turn in the detail. Use it in a stage function, e.g.::

        def redact_unit(unit, cfg):
            table = read_shard(unit.inputs[0])
            return apply_documents_transform(table, lambda docs: redact(docs, cfg),
                                             f"{kind_of(table)}_pii")
    """
    view = turns_view(table)
    out = transform(view)
    kept_docs, dropped_docs = ((out.kept, out.rejected) if isinstance(out, StageOutput)
                               else (out, None))
    n = table.num_rows
    turn_parts = parts(table)
    example_of = np.concatenate([t.rows() for t in turn_parts.values()])
    view_ids = view.column("id").combine_chunks()
    kept_ids = kept_docs.column("id").combine_chunks()
    where = pc.index_in(view_ids, value_set=kept_ids)
    present = np.asarray(where.is_valid(), dtype=bool)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    if not present.all():
        lost = np.flatnonzero(~present)
        lost_ids = view_ids.take(pa.array(lost))
        why, info = _drop_reasons(lost_ids, dropped_docs)
        for r, w, i, label in zip(example_of[lost].tolist(), why, info, lost_ids.to_pylist(),
                                  strict=True):
            if reason[r] is None:
                reason[r] = w
                turn = label.rsplit(TURN_ID_SEPARATOR, 1)[1]
                detail[r] = f"{turn}: {i}" if i else turn
    text = view.column("text").combine_chunks()
    if kept_docs.num_rows:
        new_text = pc.take(kept_docs.column("text").combine_chunks(), pc.fill_null(where, 0))
        text = pc.coalesce(pc.if_else(pa.array(present), new_text, text), text)
    start = 0
    for name, turns in turn_parts.items():
        count = len(turns.contents)
        contents = text.slice(start, count)
        start += count
        lists = Turns(turns.roles, contents, turns.offsets).to_lists()
        table = table.set_column(table.schema.get_field_index(name), name, lists)
    return split_rejected(table, pa.array(reason.tolist(), pa.string()),
                          pa.array(detail.tolist(), pa.string()), stage)


def _drop_reasons(ids: pa.Array, dropped: pa.Table | None) -> tuple[list[str], list[str]]:
    """The transform's reason and detail for each dropped document id."""
    if dropped is None or not dropped.num_rows or "reject_reason" not in dropped.column_names:
        return ["dropped_by_transform"] * len(ids), [""] * len(ids)
    where = pc.index_in(ids, value_set=dropped.column("id").combine_chunks())
    reasons = pc.take(dropped.column("reject_reason").combine_chunks(), where).to_pylist()
    details = (pc.take(dropped.column("reject_detail").combine_chunks(), where).to_pylist()
               if "reject_detail" in dropped.column_names else [None] * len(ids))
    return ([r or "dropped_by_transform" for r in reasons], [d or "" for d in details])


class TransformConfig(StageConfig):
    """A documents transform named by import path, applied through the turns view."""

    function: str
    """``module:function`` taking a documents table, returning a table or a StageOutput."""
    stage_label: str = "transform"
    """Rejected rows' ``reject_stage`` is ``<kind>_<stage_label>`` (e.g. sft_pii)."""
    options: dict[str, Any] = {}
    """Keyword arguments for the function (e.g. ``index`` for
    ``curate.labelled.transforms:decontaminate``)."""


def load_transform(spec: str) -> DocumentsTransform:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"function must be 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def _transform_unit(unit: WorkUnit, cfg: TransformConfig) -> StageOutput:
    (path,) = unit.inputs
    table = read_shard(path)
    function = load_transform(cfg.function)
    return apply_documents_transform(table, lambda docs: function(docs, **cfg.options),
                                     f"{kind_of(table)}_{cfg.stage_label}")


SFT_TRANSFORM = Stage(name="sft_transform", version="1", output_kind=SFT,
                      process=_transform_unit)
PREFERENCE_TRANSFORM = Stage(name="preference_transform", version="1", output_kind=PREFERENCE,
                             process=_transform_unit)
TRANSFORM_STAGES = {"sft": SFT_TRANSFORM, "preference": PREFERENCE_TRANSFORM}
