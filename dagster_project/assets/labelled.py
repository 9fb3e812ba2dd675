"""Labelled sets (SFT conversations and preference pairs) from raw files to token shards.

Seven assets in the ``labelled`` group, none partitioned: labelled sets are small, and each
stage folder still holds one shard per raw file, so a re-run redoes only the files that changed.

* ``labelled_demo_files``: the demo's labelled set, written into ``<data_root>/raw_labelled/``
  (``sft/``, ``preference/`` and ``labelled_demo.json``, which lists what every file holds);
* ``sft_examples`` / ``preference_examples``: every file there ingested and validated into
  ``labelled/sft_ingest`` / ``labelled/preference_ingest``;
* ``curated_sft`` / ``curated_preferences``: dedup (``<kind>_dedup/<kind>``), language and
  quality filter (``<kind>_filter``), PII redaction through the labelled sets' documents
  transform hook (``<kind>_pii``) and a train / validation split (``<kind>_split``);
* ``sft_token_shards`` / ``preference_token_shards``: the split sets tokenized with the project
  tokenizer (the ``tokenizer`` asset's folder) into ``labelled/sft_tokens`` /
  ``labelled/preference_tokens``.

Every asset checks the contract of every shard it wrote (schema, and rows in == kept +
rejected; for the curated sets also that each step read exactly what the step before kept).
The token assets add a check of what is trained on: SFT loss masks cover the assistant's replies
only, preference pairs are whole. The checks are plain functions of paths, so they also check
folders made with ``curate labelled`` and ``curate labelled sft-tokenize``.
"""
# No `from __future__ import annotations`: Dagster reads the config annotations at runtime.

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, ValidationError

from curate.labelled.curate_sets import (
    FILTER_STAGES,
    SPLIT_STAGES,
    LabelledDedupConfig,
    LabelledFilterConfig,
    SplitConfig,
    apply_documents_transform,
    run_labelled_dedup,
    split_counts,
)
from curate.labelled.demo import MANIFEST_NAME, write_labelled_demo
from curate.labelled.ingest import INGEST_STAGES, LabelledIngestConfig, plan_labelled
from curate.labelled.tokenize_chat import (
    INDEX_DIR,
    META_NAME,
    ChatTokenizeConfig,
    PreferenceTokenizeConfig,
    SftTokenizeConfig,
    chat_token_stats,
    concat_lists,
    run_preference_tokenize,
    run_sft_tokenize,
)
from curate.labelled.validate import kind_of
from curate.pii import KINDS as PII_KINDS
from curate.pii import PiiConfig, pii_report, redact_table
from curate.runner import RunReport, Stage, StageOutput, WorkUnit, plan_shards, run_stage
from curate.tokenizer import load_tokenizer
from dagster_project.assets.tokens import tokenizer, tokenizer_dir
from dagster_project.config import dagster_config, to_stage_config
from dagster_project.plots import histogram_png, md_image
from dagster_project.resources import DataRoot
from dagster_project.shard_asset import CONSERVATION_CHECK, SCHEMA_CHECK, contract_checks
from schemas import (
    PREFERENCE,
    PREFERENCE_TOKENS,
    REJECTED,
    SFT,
    SFT_TOKENS,
    RecordKind,
    get_kind,
    read_manifest,
    read_shard,
)
from schemas.manifest import kept_rows
from schemas.validate import table_problems

GROUP = "labelled"
DATASET = "labelled"
RAW_DIR = "raw_labelled"
KINDS = ("sft", "preference")
MASK_CHECK = "mask_covers_assistant_only"
PAIRS_CHECK = "pairs_consistent"
TOO_MANY = 10
"""Problems listed in a check's metadata (the counts are always complete)."""


# --- launchpad config: the library's configs, a few defaults chosen for the demo ------------------

IngestRunConfig = dagster_config(LabelledIngestConfig)
DedupRunConfig = dagster_config(LabelledDedupConfig)
FilterRunConfig = dagster_config(
    LabelledFilterConfig,
    languages=(list[str], Field(default=["en"], description=(
        "Allow-list of language codes (lid.176 on the user + assistant text); empty = all. "
        "English by default: the demo's French, German and Spanish examples are dropped."))),
    min_unique_word_ratio=(float, Field(default=0.3, ge=0.0, le=1.0, description=(
        "Distinct words / words of the response, applied from 20 words on; a looping answer "
        "falls below 0.3. 0 turns the rule off."))))
PiiRunConfig = dagster_config(
    PiiConfig,
    kinds=(list[str], Field(default=list(PII_KINDS), description=(
        f"Which kinds to redact: any of {', '.join(PII_KINDS)}."))))
SplitRunConfig = dagster_config(
    SplitConfig,
    validation_fraction=(float, Field(default=0.1, ge=0.0, le=1.0, description=(
        "Share of examples in the validation split (by a salted hash of the id)."))))


class CurateRunConfig(dg.Config):
    """The four curation steps, each with the keys and defaults of its ``curate labelled``
    command (filter and split defaults tuned for the demo: English only, loops dropped, 10%
    validation)."""

    dedup: DedupRunConfig = Field(default_factory=DedupRunConfig)
    filter: FilterRunConfig = Field(default_factory=FilterRunConfig)
    pii: PiiRunConfig = Field(default_factory=PiiRunConfig)
    split: SplitRunConfig = Field(default_factory=SplitRunConfig)


_TOKENIZER_FIELD = (str | None, Field(default=None, description=(
    "A tokenizer folder (relative paths are under the data root); empty: the `tokenizer` "
    "asset's folder, <data_root>/tokenizer.")))
SftTokenizeRunConfig = dagster_config(SftTokenizeConfig, tokenizer=_TOKENIZER_FIELD)
PreferenceTokenizeRunConfig = dagster_config(PreferenceTokenizeConfig, tokenizer=_TOKENIZER_FIELD)


class LabelledDemoConfig(dg.Config):
    seed: int = 0
    """The same seed writes the same bytes."""


# --- where things live ----------------------------------------------------------------------------

def raw_labelled_dir(data: DataRoot) -> Path:
    """The landing folder of labelled files: ``sft/`` and ``preference/`` under it."""
    return data.path / RAW_DIR


def labelled_dir(data: DataRoot, stage: str) -> Path:
    return data.stage_dir(DATASET, stage)


def curated_dirs(data: DataRoot, kind: str) -> dict[str, Path]:
    """Each curation step's stage folder (dedup's examples sit inside its phase folders)."""
    return {"dedup": labelled_dir(data, f"{kind}_dedup") / kind,
            "filter": labelled_dir(data, f"{kind}_filter"),
            "pii": labelled_dir(data, f"{kind}_pii"),
            "split": labelled_dir(data, f"{kind}_split")}


def tokens_dir(data: DataRoot, kind: str) -> Path:
    return labelled_dir(data, f"{kind}_tokens")


# --- PII redaction of labelled examples (a stage over the transform hook) -------------------------

def redact_examples(table: pa.Table, cfg: PiiConfig, stage: str) -> StageOutput:
    """``curate.pii.redact_table`` over every turn of an sft / preference table, through
    :func:`~curate.labelled.curate_sets.apply_documents_transform`. Kept (and rejected) rows get
    the example's ``pii_counts`` (per kind) and ``pii_redactions``, summed over its turns, so
    :func:`curate.pii.pii_report` reads this stage like the documents one."""
    seen: list[pa.Table] = []
    columns = ["example_id", "pii_counts", "pii_redactions"]

    def transform(docs: pa.Table) -> StageOutput:
        out = redact_table(docs, cfg)
        seen.extend(t.select(columns) for t in (out.kept, out.rejected))
        return out

    out = apply_documents_transform(table, transform, stage)
    turns = pa.concat_tables(seen).flatten()
    sums = turns.group_by("example_id").aggregate(
        [(f"pii_counts.{k}", "sum") for k in PII_KINDS] + [("pii_redactions", "sum")])
    keys = sums.column("example_id").combine_chunks()

    def with_counts(rows: pa.Table) -> pa.Table:
        at = pc.index_in(rows.column("id").combine_chunks(), value_set=keys)

        def pick(name: str) -> pa.Array:
            return pc.fill_null(pc.take(sums.column(name).combine_chunks(), at), 0).cast(
                pa.int32())

        counts = pa.StructArray.from_arrays([pick(f"pii_counts.{k}_sum") for k in PII_KINDS],
                                            names=list(PII_KINDS))
        return (rows.append_column("pii_counts", counts)
                .append_column("pii_redactions", pick("pii_redactions_sum")))

    return StageOutput(kept=with_counts(out.kept), rejected=with_counts(out.rejected),
                       rows_in=out.rows_in)


def _pii_unit(unit: WorkUnit, cfg: PiiConfig) -> StageOutput:
    (path,) = unit.inputs
    table = read_shard(path)
    return redact_examples(table, cfg, f"{kind_of(table)}_pii")


PII_STAGES = {"sft": Stage(name="sft_pii", version="1", output_kind=SFT, process=_pii_unit),
              "preference": Stage(name="preference_pii", version="1", output_kind=PREFERENCE,
                                  process=_pii_unit)}


# --- the data contract over a whole stage folder --------------------------------------------------

@dataclass
class Step:
    """One stage folder a run wrote: which shards, of which kind, and how many rows it should
    have read (what the step before kept; None: not checked)."""

    label: str
    out_dir: Path
    kind: RecordKind
    names: list[str]
    expected_in: int | None = None


def _shard_problems(step: Step, entry: dict[str, Any]) -> list[str]:
    """Schema problems of a shard, its rejected rows and its companion shards, re-read."""
    files = [(entry["name"], step.kind)]
    if entry.get("rejected"):
        files.append((entry["rejected"]["name"], REJECTED))
    files += [(e["name"], get_kind(e["kind"])) for e in entry.get("extras", {}).values()]
    return [f"{step.label}/{name}: {p}" for name, kind in files
            for p in table_problems(read_shard(step.out_dir / name), kind)]


def kept_total(stage_dir: Path, names: list[str] | None = None) -> int:
    """Rows a stage folder's shards keep (all of them, or ``names``)."""
    manifest = read_manifest(stage_dir)
    if manifest is None:
        return 0
    shards = manifest.shards
    return sum(kept_rows(shards[n]) for n in (shards if names is None else names) if n in shards)


def contract_results(steps: list[Step]) -> list[dg.AssetCheckResult]:
    """``schema`` and ``rows_conserved`` over every shard of every step."""
    problems: list[str] = []
    broken: list[str] = []
    totals: dict[str, dict[str, int]] = {}
    for step in steps:
        manifest = read_manifest(step.out_dir)
        shards = manifest.shards if manifest else {}
        rows_in = kept = rejected = 0
        for name in step.names:
            entry = shards.get(name)
            if entry is None:
                problems.append(f"{step.label}/{name}: not in the manifest")
                broken.append(f"{step.label}/{name}: not in the manifest")
                continue
            problems += _shard_problems(step, entry)
            n_rejected = entry["rejected"]["rows"] if entry.get("rejected") else 0
            if entry["rows_in"] != kept_rows(entry) + n_rejected:
                broken.append(f"{step.label}/{name}: {entry['rows_in']} in != "
                              f"{kept_rows(entry)} kept + {n_rejected} rejected")
            rows_in += entry["rows_in"]
            kept += kept_rows(entry)
            rejected += n_rejected
        if step.expected_in is not None and rows_in != step.expected_in:
            broken.append(f"{step.label}: read {rows_in} rows, the step before kept "
                          f"{step.expected_in}")
        totals[step.label] = {"rows_in": rows_in, "rows_kept": kept, "rows_rejected": rejected}
    kinds = sorted({f"{s.kind.name} v{s.kind.version}" for s in steps})
    return [
        dg.AssetCheckResult(
            check_name=SCHEMA_CHECK, passed=not problems,
            metadata={"kinds": dg.MetadataValue.json(kinds),
                      "shards": sum(len(s.names) for s in steps), "problem_count": len(problems),
                      "problems": dg.MetadataValue.json(problems[:TOO_MANY])}),
        dg.AssetCheckResult(
            check_name=CONSERVATION_CHECK, passed=not broken,
            metadata={"steps": dg.MetadataValue.json(totals),
                      "problems": dg.MetadataValue.json(broken[:TOO_MANY])}),
    ]


# --- checks on token shards -----------------------------------------------------------------------

def _flat(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(flat values as int64, list length per row) of a list column."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    return (arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64),
            lengths.astype(np.int64))


def _starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def mask_problems(shard: Path, index: Path, end_of_turn_id: int,
                  forbidden_ids: tuple[int, ...] = ()) -> tuple[list[str], dict[str, int]]:
    """What is wrong with one ``sft_tokens`` shard's loss mask, and counts.

    For every row: ``len(input_ids) == len(loss_mask)``, the mask is 0/1 and not all zero;
    every run of 1s (a reply) ends with the end-of-turn id, which appears nowhere else inside
    a run, and no masked token is one of ``forbidden_ids`` (BOS, padding, the turn-start
    marker). A conversation the tokenizer truncated (``token_index``) may end inside a run.
    """
    table = read_shard(shard, columns=["id", "input_ids", "loss_mask"])
    row_ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    ids, id_len = _flat(table.column("input_ids"))
    mask, mask_len = _flat(table.column("loss_mask"))
    problems = [f"{row_ids[r]}: {id_len[r]} ids, {mask_len[r]} mask values"
                for r in np.flatnonzero(id_len != mask_len)]
    stats = {"rows": len(row_ids), "tokens": int(id_len.sum()), "masked_tokens": 0,
             "replies": 0, "length_mismatches": len(problems)}
    if problems:  # positions are meaningless past a mismatch
        return problems, stats
    starts = _starts(id_len)
    owner = np.repeat(np.arange(len(id_len)), id_len)
    not_binary = np.flatnonzero(mask > 1)
    problems += [f"{row_ids[owner[i]]}: mask value {mask[i]} at {i - starts[owner[i]]}"
                 for i in not_binary[:TOO_MANY]]
    on = mask > 0
    masked = np.bincount(owner, weights=on, minlength=len(id_len))
    problems += [f"{row_ids[r]}: nothing to learn (loss mask all zero)"
                 for r in np.flatnonzero(masked == 0)]
    # a run ends before a 0, at the end of a row, or at the end of a conversation
    last = np.zeros(len(ids), dtype=bool)
    last[starts[1:][id_len > 0] - 1] = True
    idx = read_shard(index, columns=["doc_id", "row", "offset", "length", "truncated"])
    row = np.clip(idx.column("row").to_numpy().astype(np.int64), 0, len(id_len))
    conv_end = (starts[row] + idx.column("offset").to_numpy().astype(np.int64)
                + idx.column("length").to_numpy().astype(np.int64) - 1)
    cut = np.asarray(idx.column("truncated").to_pylist(), dtype=bool)
    inside = (conv_end >= 0) & (conv_end < len(ids))
    last[conv_end[inside]] = True
    truncated_end = np.zeros(len(ids), dtype=bool)
    truncated_end[conv_end[inside & cut]] = True
    run_end = on & (last | ~np.append(on[1:], False))
    eot = ids == end_of_turn_id
    for where, what in (
            (run_end & ~eot & ~truncated_end, "a reply ends with id {id}, not end-of-turn"),
            (on & eot & ~run_end, "end-of-turn inside a reply"),
            (on & np.isin(ids, list(forbidden_ids)), "special id {id} is trained on")):
        problems += [f"{row_ids[owner[i]]}: " + what.format(id=int(ids[i]))
                     + f" (position {i - starts[owner[i]]})" for i in np.flatnonzero(where)]
    stats.update(masked_tokens=int(on.sum()), replies=int(run_end.sum()))
    return problems, stats


def mask_covers_assistant_only(out_dir: Path, names: list[str],
                               forbidden_ids: tuple[int, ...] = ()) -> dg.AssetCheckResult:
    """:func:`mask_problems` over shards ``names`` of an ``sft_tokens`` folder (its
    ``_tokenizer.json`` gives the end-of-turn, BOS and padding ids)."""
    meta = json.loads((out_dir / META_NAME).read_text())
    forbidden = tuple(sorted({*forbidden_ids, *(meta[k] for k in ("bos_id", "pad_id")
                                                 if meta.get(k) is not None)}))
    problems: list[str] = []
    totals: Counter = Counter()
    for name in names:
        found, stats = mask_problems(out_dir / name, out_dir / INDEX_DIR / name,
                                     int(meta["end_of_turn_id"]), forbidden)
        problems += [f"{name}: {p}" for p in found]
        totals.update(stats)
    return dg.AssetCheckResult(
        check_name=MASK_CHECK, passed=not problems,
        metadata={**{k: int(v) for k, v in sorted(totals.items())}, "shards": len(names),
                  "problem_count": len(problems),
                  "end_of_turn_id": int(meta["end_of_turn_id"]),
                  "forbidden_ids": dg.MetadataValue.json(list(forbidden)),
                  "examples": dg.MetadataValue.json(problems[:TOO_MANY])})


def _row_differs(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Per row: do two list columns hold different lists?"""
    la = pc.fill_null(pc.list_value_length(a), 0).to_numpy(zero_copy_only=False)
    lb = pc.fill_null(pc.list_value_length(b), 0).to_numpy(zero_copy_only=False)
    differs = la != lb
    same_len = np.flatnonzero(~differs)
    if len(same_len):
        pick = pa.array(same_len, pa.int64())
        xa, lens = _flat(a.take(pick))
        xb, _ = _flat(b.take(pick))
        owner = np.repeat(np.arange(len(same_len)), lens)
        differs[same_len] = np.bincount(owner, weights=xa != xb, minlength=len(same_len)) > 0
    return differs


def pair_problems(shard: Path, end_of_turn_id: int) -> tuple[list[str], dict[str, int]]:
    """What is wrong with one ``preference_tokens`` shard: every row has a prompt and two
    non-empty, different replies, each holding the end-of-turn id unless truncated, and the
    reward-model columns (when present) are exactly prompt + reply."""
    table = read_shard(shard)
    n = table.num_rows
    row_ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    truncated = (np.asarray(table.column("truncated").to_pylist(), dtype=bool)
                 if "truncated" in table.column_names else np.zeros(n, dtype=bool))
    problems: list[str] = []
    cols = {c: table.column(c).combine_chunks() for c in ("prompt_ids", "chosen_ids",
                                                          "rejected_ids")}
    for name, col in cols.items():
        flat, lengths = _flat(col)
        problems += [f"{row_ids[r]}: {name} is empty" for r in np.flatnonzero(lengths == 0)]
        if name != "prompt_ids":
            owner = np.repeat(np.arange(n), lengths)
            has_eot = np.bincount(owner, weights=flat == end_of_turn_id, minlength=n) > 0
            problems += [f"{row_ids[r]}: {name} has no end-of-turn id"
                         for r in np.flatnonzero(~has_eot & ~truncated & (lengths > 0))]
    same = ~_row_differs(cols["chosen_ids"], cols["rejected_ids"])
    problems += [f"{row_ids[r]}: chosen_ids == rejected_ids" for r in np.flatnonzero(same)]
    for side in ("chosen", "rejected"):
        name = f"{side}_input_ids"
        if name in table.column_names:
            whole = concat_lists(cols["prompt_ids"], cols[f"{side}_ids"])
            bad = _row_differs(table.column(name).combine_chunks(), whole)
            problems += [f"{row_ids[r]}: {name} != prompt_ids + {side}_ids"
                         for r in np.flatnonzero(bad)]
    return problems, {"pairs": n, "truncated": int(truncated.sum())}


def pairs_consistent(out_dir: Path, names: list[str]) -> dg.AssetCheckResult:
    """:func:`pair_problems` over shards ``names`` of a ``preference_tokens`` folder."""
    meta = json.loads((out_dir / META_NAME).read_text())
    problems: list[str] = []
    totals: Counter = Counter()
    for name in names:
        found, stats = pair_problems(out_dir / name, int(meta["end_of_turn_id"]))
        problems += [f"{name}: {p}" for p in found]
        totals.update(stats)
    return dg.AssetCheckResult(
        check_name=PAIRS_CHECK, passed=not problems,
        metadata={**{k: int(v) for k, v in sorted(totals.items())}, "shards": len(names),
                  "problem_count": len(problems),
                  "examples": dg.MetadataValue.json(problems[:TOO_MANY])})


# --- shared pieces of the assets ------------------------------------------------------------------

def _raise_failures(reports: list[RunReport | None], what: str) -> None:
    """Fail the step naming every shard that failed (the others are written and resumable)."""
    failed = [f"{r.stage} {unit}: {error}" for r in reports if r is not None
              for unit, error in sorted(r.failures.items())]
    if failed:
        raise dg.Failure(description=f"{what}: {len(failed)} shard(s) failed; fix the input and "
                                     "materialize again (finished shards are kept)",
                         metadata={"failures": dg.MetadataValue.json(failed)})


def _validated(model: type, config: dg.Config) -> Any:
    try:
        return to_stage_config(config, model)
    except ValidationError as exc:
        raise dg.Failure(f"invalid {model.__name__}: {exc}") from None


def _names(stage_dir: Path) -> list[str]:
    return [u.name for u in plan_shards(stage_dir)]


def _reasons_md(reasons: dict[str, int]) -> str:
    return ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1],
                                                                                    kv[0])))


def _turns(stage_dir: Path, kind: str) -> Counter:
    """Conversations by number of turns (preference: prompt + chosen) over a folder's shards."""
    parts = ("messages",) if kind == "sft" else ("prompt", "chosen")
    counts: Counter = Counter()
    for name in _names(stage_dir):
        table = read_shard(stage_dir / name, columns=list(parts))
        total = sum(pc.fill_null(pc.list_value_length(table.column(p)), 0).to_numpy()
                    for p in parts)
        counts.update(np.asarray(total).tolist())
    return counts


# --- assets ---------------------------------------------------------------------------------------

@dg.asset(group_name=GROUP, kinds={"json"},
          description="The demo's labelled set in <data_root>/raw_labelled/: SFT conversations "
                      "(chat messages, ShareGPT, Alpaca, gzipped prompt/completion) and "
                      "preference pairs (strings, message lists, transcripts), with broken rows, "
                      "planted duplicates, non-English and looping examples; "
                      "labelled_demo.json lists what each file holds and should lose.")
def labelled_demo_files(context: dg.AssetExecutionContext, config: LabelledDemoConfig,
                        data: DataRoot) -> dg.MaterializeResult:
    out = raw_labelled_dir(data)
    paths = write_labelled_demo(out, seed=config.seed)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    rows = "\n".join(f"| {name} | {info['layout']} | {info['rows']} | {info['valid']} | "
                     f"{_reasons_md(info['rejects']) or '-'} |"
                     for name, info in manifest["files"].items())
    context.log.info(f"wrote {len(paths)} files under {out}")
    return dg.MaterializeResult(metadata={
        "files": dg.MetadataValue.json([p.relative_to(out).as_posix() for p in paths]),
        "rows": sum(i["rows"] for i in manifest["files"].values()),
        "valid_rows": sum(i["valid"] for i in manifest["files"].values()),
        "planted": dg.MetadataValue.json({k: len(v) for k, v in manifest["planted"].items()}),
        "by_file": dg.MetadataValue.md("| file | layout | rows | valid | broken |\n"
                                       "|---|---|---:|---:|---|\n" + rows),
        "path": dg.MetadataValue.path(str(out)),
    })


def _ingest(context: dg.AssetExecutionContext, config: dg.Config, data: DataRoot,
            kind: str) -> dg.MaterializeResult:
    cfg = _validated(LabelledIngestConfig, config)
    source = raw_labelled_dir(data) / kind
    units = plan_labelled(source) if source.is_dir() else []
    if not units:
        raise dg.Failure(f"no {kind} files in {source}: materialize labelled_demo_files or drop "
                         "JSONL / JSON / CSV / Parquet files there")
    out = labelled_dir(data, f"{kind}_ingest")
    report = run_stage(INGEST_STAGES[kind], units, out, cfg, progress=False)
    _raise_failures([report], f"{kind}_ingest")
    names = [u.name for u in units]
    manifest = read_manifest(out)
    assert manifest is not None
    entries = [manifest.shards[n] for n in names]
    table = "\n".join(f"| {e['name'].removeprefix('part-').removesuffix('.arrow')} | "
                      f"{e['rows_in']:,} | {kept_rows(e):,} | {e['rows_rejected']:,} | "
                      f"{_reasons_md(e['reject_reasons']) or '-'} |" for e in entries)
    turns = _turns(out, kind)
    hist = histogram_png(dict(turns), title=f"{kind} conversations by turns",
                         xlabel="turns" + (" (prompt + chosen)" if kind == "preference" else ""),
                         ylabel="conversations")
    context.log.info(f"{kind}: {report.rows_in} rows in, {report.rows_kept} kept, "
                     f"{report.rows_rejected} rejected ({report.skipped} files unchanged)")
    return dg.MaterializeResult(
        metadata={
            "files": len(units),
            "rows_in": report.rows_in,
            "rows_kept": report.rows_kept,
            "rows_rejected": report.rows_rejected,
            "reject_reasons": dg.MetadataValue.json(dict(sorted(report.reasons.items()))),
            "by_file": dg.MetadataValue.md("| file | rows in | kept | rejected | reasons |\n"
                                           "|---|---:|---:|---:|---|\n" + table),
            "turns_histogram": dg.MetadataValue.json({str(k): v for k, v in
                                                      sorted(turns.items())}),
            "turns": md_image(hist, "conversations by turns"),
            "recomputed_files": report.done,
            "path": dg.MetadataValue.path(str(out)),
        },
        check_results=contract_results([Step(f"{kind}_ingest", out, _kind(kind), names)]),
    )


def _kind(kind: str) -> RecordKind:
    return SFT if kind == "sft" else PREFERENCE


@dg.asset(group_name=GROUP, kinds={"arrow"}, deps=[labelled_demo_files],
          check_specs=contract_checks("sft_examples"),
          description="Every file in <data_root>/raw_labelled/sft/ (any layout ingest knows) as "
                      "an sft shard of validated conversations at labelled/sft_ingest; broken "
                      "and invalid rows go to rejected/ with their reason.")
def sft_examples(context: dg.AssetExecutionContext, config: IngestRunConfig,
                 data: DataRoot) -> dg.MaterializeResult:
    return _ingest(context, config, data, "sft")


@dg.asset(group_name=GROUP, kinds={"arrow"}, deps=[labelled_demo_files],
          check_specs=contract_checks("preference_examples"),
          description="Every file in <data_root>/raw_labelled/preference/ as a preference shard "
                      "of validated pairs at labelled/preference_ingest; broken and invalid "
                      "rows go to rejected/ with their reason.")
def preference_examples(context: dg.AssetExecutionContext, config: IngestRunConfig,
                        data: DataRoot) -> dg.MaterializeResult:
    return _ingest(context, config, data, "preference")


def _funnel_md(rows: list[tuple[str, int, int, int, str]]) -> str:
    lines = [f"| {step} | {n_in:,} | {kept:,} | {removed:,} | {why or '-'} |"
             for step, n_in, kept, removed, why in rows]
    return "\n".join(["| step | in | kept | removed | reasons |", "|---|---:|---:|---:|---|",
                      *lines])


def _curate(context: dg.AssetExecutionContext, config: CurateRunConfig, data: DataRoot,
            kind: str) -> dg.MaterializeResult:
    dedup_cfg = _validated(LabelledDedupConfig, config.dedup)
    filter_cfg = _validated(LabelledFilterConfig, config.filter)
    pii_cfg = _validated(PiiConfig, config.pii)
    split_cfg = _validated(SplitConfig, config.split)
    source = labelled_dir(data, f"{kind}_ingest")
    if read_manifest(source) is None:
        raise dg.Failure(f"{source} has no shards: materialize {kind}_examples first")
    dirs = curated_dirs(data, kind)
    names = _names(source)
    try:
        dedup = run_labelled_dedup(source, dirs["dedup"].parent, dedup_cfg)
    except (ValueError, FileNotFoundError) as exc:
        raise dg.Failure(f"{kind}_dedup: {exc}") from None
    _raise_failures([dedup.view, dedup.dedup.signatures, dedup.dedup.removal], f"{kind}_dedup")
    reports: dict[str, RunReport] = {"dedup": dedup.dedup.removal}
    for step, stages, cfg, before in (("filter", FILTER_STAGES, filter_cfg, "dedup"),
                                      ("pii", PII_STAGES, pii_cfg, "filter"),
                                      ("split", SPLIT_STAGES, split_cfg, "pii")):
        reports[step] = run_stage(stages[kind], plan_shards(dirs[before]), dirs[step], cfg,
                                  progress=False)
        _raise_failures([reports[step]], f"{kind}_{step}")
    context.log.info(dedup.summary())

    expected = kept_total(source, names)
    checks: list[Step] = []
    for step, folder in dirs.items():
        checks.append(Step(f"{kind}_{step}", folder, _kind(kind), names, expected))
        expected = kept_total(folder, names)
    pii = pii_report(dirs["pii"])
    splits = split_counts(dirs["split"])
    redacted = ", ".join(f"{k} {n}" for k, n in pii.items() if k in PII_KINDS and n)
    notes = {"pii": f"{pii['documents_with_pii']} examples redacted "
                    f"({redacted or 'no PII found'})",
             "split": " / ".join(f"{k} {v}" for k, v in splits.items())}
    funnel = [(f"{kind}_{step}", r.rows_in, r.rows_kept, r.rows_rejected,
               "; ".join(x for x in (_reasons_md(dict(r.reasons)), notes.get(step)) if x))
              for step, r in reports.items()]
    removed: Counter = Counter()
    for r in reports.values():
        removed.update(r.reasons)
    first, last = reports["dedup"], reports["split"]
    return dg.MaterializeResult(
        metadata={
            "rows_in": first.rows_in,
            "rows_kept": last.rows_kept,
            "rows_removed": first.rows_in - last.rows_kept,
            "funnel": dg.MetadataValue.md(_funnel_md(funnel)),
            "removed_by_reason": dg.MetadataValue.json(dict(sorted(removed.items()))),
            "duplicate_rate": float(first.rows_rejected / first.rows_in if first.rows_in
                                    else 0.0),
            "pii_redactions": dg.MetadataValue.json(pii),
            "splits": dg.MetadataValue.json(splits),
            "train": splits.get("train", 0),
            "validation": splits.get("validation", 0),
            "path": dg.MetadataValue.path(str(dirs["split"])),
        },
        check_results=contract_results(checks),
    )


@dg.asset(group_name=GROUP, kinds={"arrow"}, deps=[sft_examples],
          check_specs=contract_checks("curated_sft"),
          description="The ingested conversations deduplicated (exact and MinHash, compared by "
                      "the rendered conversation), language- and quality-filtered, PII-redacted "
                      "in every turn (curate.pii through the documents-transform hook) and split "
                      "train / validation by a salted hash of the id: labelled/sft_dedup/sft, "
                      "sft_filter, sft_pii, sft_split. Each step's removals are in its "
                      "rejected/ with a reason.")
def curated_sft(context: dg.AssetExecutionContext, config: CurateRunConfig,
                data: DataRoot) -> dg.MaterializeResult:
    return _curate(context, config, data, "sft")


@dg.asset(group_name=GROUP, kinds={"arrow"}, deps=[preference_examples],
          check_specs=contract_checks("curated_preferences"),
          description="The ingested preference pairs deduplicated, filtered (language and "
                      "quality on the prompt and the chosen reply), PII-redacted and split: "
                      "labelled/preference_dedup/preference, preference_filter, preference_pii, "
                      "preference_split.")
def curated_preferences(context: dg.AssetExecutionContext, config: CurateRunConfig,
                        data: DataRoot) -> dg.MaterializeResult:
    return _curate(context, config, data, "preference")


def chat_tokenize_config(config: dg.Config, model: type, data: DataRoot) -> ChatTokenizeConfig:
    """The library's config with the tokenizer folder resolved (default: the tokenizer
    asset's)."""
    settings = config.model_dump()
    folder = Path(settings["tokenizer"]).expanduser() if settings["tokenizer"] else None
    settings["tokenizer"] = str(data.path / folder if folder else tokenizer_dir(data))
    try:
        cfg = model.model_validate(settings)
    except ValidationError as exc:
        raise dg.Failure(f"invalid {model.__name__}: {exc}") from None
    if not (Path(cfg.tokenizer) / "tokenizer.json").is_file():
        raise dg.Failure(f"{cfg.tokenizer} has no tokenizer.json: materialize tokenizer first "
                         "(or give a tokenizer folder)")
    return cfg


def _tokens(context: dg.AssetExecutionContext, config: dg.Config, data: DataRoot, kind: str,
            model: type, run: Callable[..., RunReport]) -> dg.MaterializeResult:
    source = curated_dirs(data, kind)["split"]
    if read_manifest(source) is None:
        raise dg.Failure(f"{source} has no shards: materialize "
                         f"{'curated_sft' if kind == 'sft' else 'curated_preferences'} first")
    cfg = chat_tokenize_config(config, model, data)
    out = tokens_dir(data, kind)
    try:
        report = run(source, out, cfg)
    except (ValueError, FileNotFoundError) as exc:
        raise dg.Failure(f"{kind}_tokenize: {exc}") from None
    _raise_failures([report], f"{kind}_tokenize")
    names = _names(source)
    meta = json.loads((out / META_NAME).read_text())
    stats = chat_token_stats(out)
    splits: Counter = Counter()
    lengths = []
    for name in names:
        if kind == "sft":
            lengths.append(read_shard(out / INDEX_DIR / name, columns=["length"])
                           .column("length").to_numpy())
            table = read_shard(out / name, columns=["split"])
        else:
            table = read_shard(out / name)
            _, p = _flat(table.column("prompt_ids"))
            _, c = _flat(table.column("chosen_ids"))
            _, r = _flat(table.column("rejected_ids"))
            lengths.append(p + np.maximum(c, r))
        splits.update({str(s): n for s, n in Counter(table.column("split").to_pylist()).items()})
    lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    what = "conversations" if kind == "sft" else "pairs (prompt + longer reply)"
    hist = histogram_png(lengths_all, title=f"{kind} {what} by length", xlabel="tokens",
                         ylabel="conversations" if kind == "sft" else "pairs")
    check_steps = [Step(f"{kind}_tokens", out, SFT_TOKENS if kind == "sft" else PREFERENCE_TOKENS,
                        names, kept_total(source, names))]
    if kind == "sft":  # no special token but the end of turn is ever trained on
        special = load_tokenizer(Path(cfg.tokenizer)).special_ids.values()
        forbidden = tuple(sorted(i for i in special if i != meta["end_of_turn_id"]))
        extra = mask_covers_assistant_only(out, names, forbidden)
    else:
        extra = pairs_consistent(out, names)
    trained = stats.get("trained_tokens")
    return dg.MaterializeResult(
        metadata={
            "tokens": int(stats.get("tokens", 0)),
            **({"trained_tokens": int(trained),
                "trained_share": float(trained / max(stats.get("tokens", 0), 1))}
               if trained is not None else {}),
            "rows": int(stats.get("rows", 0)),
            "examples": int(report.rows_kept),
            "truncated": int(stats.get("truncated", 0)),
            "dropped": int(report.rows_rejected),
            "dropped_by_reason": dg.MetadataValue.json(dict(sorted(report.reasons.items()))),
            "rows_by_split": dg.MetadataValue.json(dict(sorted(splits.items()))),
            "mean_length": float(lengths_all.mean() if lengths_all.size else 0.0),
            "max_length_seen": int(lengths_all.max() if lengths_all.size else 0),
            "lengths": md_image(hist, f"{kind} lengths in tokens"),
            "max_length": cfg.max_length,
            "truncation": cfg.truncation,
            "vocab_size": int(meta["vocab_size"]),
            "token_dtype": meta["token_dtype"],
            "tokenizer": dg.MetadataValue.path(meta["tokenizer"]),
            "tokenizer_sha256": meta["tokenizer_sha256"],
            "path": dg.MetadataValue.path(str(out)),
        },
        check_results=[*contract_results(check_steps), extra],
    )


@dg.asset(group_name=GROUP, kinds={"arrow"}, deps=[tokenizer, curated_sft],
          check_specs=[
              *contract_checks("sft_token_shards"),
              dg.AssetCheckSpec(MASK_CHECK, asset="sft_token_shards", blocking=True,
                                description="For every row: as many mask values as ids, the "
                                            "mask not all zero, every masked run (a reply) "
                                            "ends with the end-of-turn id and holds no other "
                                            "special token."),
          ],
          description="The curated conversations rendered with the tokenizer's ChatML template "
                      "into sft_tokens rows at labelled/sft_tokens: input_ids, loss_mask (1 on "
                      "the assistant's replies and their end-of-turn token), split, plus "
                      "token_index/ and _tokenizer.json. Load for TRL with "
                      "curate.labelled.tokenize_chat.trl_dataset(folder, 'sft').")
def sft_token_shards(context: dg.AssetExecutionContext, config: SftTokenizeRunConfig,
                     data: DataRoot) -> dg.MaterializeResult:
    return _tokens(context, config, data, "sft", SftTokenizeConfig, run_sft_tokenize)


@dg.asset(group_name=GROUP, kinds={"arrow"}, deps=[tokenizer, curated_preferences],
          check_specs=[
              *contract_checks("preference_token_shards"),
              dg.AssetCheckSpec(PAIRS_CHECK, asset="preference_token_shards", blocking=True,
                                description="For every pair: a prompt and two different, "
                                            "non-empty replies, each with the end-of-turn id "
                                            "unless truncated; chosen/rejected_input_ids are "
                                            "exactly prompt_ids + the reply."),
          ],
          description="The curated preference pairs tokenized into preference_tokens rows at "
                      "labelled/preference_tokens: prompt_ids (through the reply's header), "
                      "chosen_ids, rejected_ids and prompt + reply for reward models. Load for "
                      "TRL with curate.labelled.tokenize_chat.trl_dataset(folder, 'reward').")
def preference_token_shards(context: dg.AssetExecutionContext,
                            config: PreferenceTokenizeRunConfig,
                            data: DataRoot) -> dg.MaterializeResult:
    return _tokens(context, config, data, "preference", PreferenceTokenizeConfig,
                   run_preference_tokenize)


LABELLED_ASSETS = [labelled_demo_files, sft_examples, preference_examples, curated_sft,
                   curated_preferences, sft_token_shards, preference_token_shards]


# --- the demo's summary ---------------------------------------------------------------------------

def labelled_totals(data: DataRoot) -> list[str]:
    """One line per kind: rows through each step, the split and the tokens."""
    lines = []
    for kind in KINDS:
        ingest = read_manifest(labelled_dir(data, f"{kind}_ingest"))
        dirs = curated_dirs(data, kind)
        manifests = {step: read_manifest(folder) for step, folder in dirs.items()}
        tokens = tokens_dir(data, kind)
        if ingest is None or any(m is None for m in manifests.values()):
            lines.append(f"  labelled {kind}: not run")
            continue
        t = ingest.totals()
        removed = {step: m.totals()["rows_rejected"] for step, m in manifests.items() if m}
        splits = split_counts(dirs["split"])
        pii = pii_report(dirs["pii"])
        line = (f"  labelled {kind}: {t['rows_in']} rows in, {t['rows_kept']} valid "
                f"({t['rows_rejected']} rejected), {removed['dedup']} duplicates, "
                f"{removed['filter']} filtered, {pii['documents_with_pii']} with PII redacted "
                f"-> " + " / ".join(f"{n} {s}" for s, n in splits.items()))
        if read_manifest(tokens) is not None:
            s = chat_token_stats(tokens)
            line += f"; {s.get('tokens', 0):,} tokens ({s.get('truncated', 0)} truncated)"
        lines.append(line)
    return lines

