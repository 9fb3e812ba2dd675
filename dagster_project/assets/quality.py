"""Quality filtering, PII redaction and decontamination of the deduplicated web documents.

Per WARC partition, in pipeline order (each reads the previous asset's shard):

* ``quality_signals``: the Gopher / C4 / FineWeb signal columns (``q_*``); rejects nothing;
* ``quality_selected``: a selection recipe (preset ``fineweb`` by default) applied to them;
  rejected rows name their first failed rule; the funnel (documents and characters removed
  per rule) is in the metadata as a table and a chart, and ``curate stats`` prints it;
* ``pii_redacted``: emails, phone numbers, IPs, card numbers and IBANs replaced by
  placeholders, with counts per kind;
* ``decontaminated_documents``: documents sharing an n-gram with an evaluation set removed
  (or flagged), with the eval items each one hit. This is the curated web corpus the tokenizer
  and the token shards read.

Plus one global asset, ``eval_ngram_index``: the n-gram index of the evaluation sets
(``eval_sets``), by default of a small demo set generated from the demo site with two items
planted from crawled articles, so the demo shows a real catch.

Quality first (on the text as crawled, as FineWeb does: placeholders would change the signals),
then PII, then decontamination last, so that nothing after it can reintroduce an eval passage.
Beside the contract checks, blocking checks re-read each written shard: no kept document fails
a rule of the recipe, no PII is left, no kept document shares an n-gram with the eval index.
"""
# No `from __future__ import annotations`: Dagster reads the config annotations at runtime.

import json
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, ValidationError

from curate.decontaminate import (
    CONTAMINATED,
    DECONTAMINATE,
    INDEX_FILE,
    DecontamConfig,
    EvalSource,
    IndexConfig,
    build_index,
    decontamination_report,
    read_columns,
    uncaught_contamination,
    write_report,
)
from curate.dedup.remove import REMOVE
from curate.demo_eval import EVAL_NAME, write_demo_eval
from curate.ingest import shard_name_for
from curate.pii import KINDS, PII, PiiConfig, candidate_mask, residual_findings
from curate.quality.rules import PRESETS, Recipe, Rule, RuleSpec, resolve
from curate.quality.select import QUALITY_SELECT, failures, funnel_from, funnel_png, stage_funnel
from curate.quality.signals import QUALITY_SIGNALS, C4LineFilter, SignalsConfig, signal_columns
from curate.runner import Stage, WorkUnit
from dagster_project.assets.dedup import deduplicated_documents
from dagster_project.assets.demo import demo_site
from dagster_project.assets.web import DATASET, warc_files
from dagster_project.config import dagster_config
from dagster_project.plots import md_image
from dagster_project.resources import DataRoot
from dagster_project.shard_asset import contract_checks, materialize_unit
from schemas import read_manifest, read_shard, sha256_file

CURATED_STAGE = DECONTAMINATE.name
"""The web dataset's last curation stage (``web/decontaminate``): what tokenization reads."""
EVAL_DIR = "eval"
INDEX_DIR = "ngram_index"
KEPT_PASS_CHECK = "kept_pass_every_rule"
NO_PII_CHECK = "no_pii_left"
NO_CONTAMINATION_CHECK = "no_contamination_passes"
TOO_MANY = 10
"""Examples listed in a check's metadata (counts are always complete)."""
HISTOGRAM_SIGNALS = ("q_gopher_word_count", "q_gopher_stop_words",
                     "q_gopher_alpha_words_ratio", "q_gopher_dup_line_char_frac",
                     "q_gopher_top_2gram_char_frac", "q_fineweb_line_punct_ratio")
"""Signals drawn in ``quality_signals``' histograms (the rules that decide most web pages)."""

C4LineFilterRun = dagster_config(C4LineFilter)
SignalsRunConfig = dagster_config(
    SignalsConfig,
    c4=(C4LineFilterRun, Field(default_factory=C4LineFilterRun, description=(
        "C4's line filter as published (signals q_c4_*)."))),
    c4_fineweb=(C4LineFilterRun, Field(
        default_factory=lambda: C4LineFilterRun(filter_no_terminal_punct=False),
        description="C4's line filter as FineWeb runs it (signals q_c4fw_*).")))
RuleSpecRun = dagster_config(
    RuleSpec, op=(str | None, Field(default=None, description=(
        "min (values below the threshold fail) or max (values above it fail)."))))
RecipeRunConfig = dagster_config(
    Recipe, rules=(dict[str, RuleSpecRun], Field(default_factory=dict, description=(
        "Changes to the preset's rules by name: threshold, enabled: false, langs: [en]; or a "
        "new rule with column, op and threshold."))))
PiiRunConfig = dagster_config(
    PiiConfig, kinds=(list[str], Field(default_factory=lambda: list(KINDS), description=(
        f"Kinds to redact, of {', '.join(KINDS)}."))))
EvalIndexRunConfig = dagster_config(
    IndexConfig, eval_sets=(list[str], Field(default=[], description=(
        "Evaluation sets to index: PATH or NAME=PATH, each a JSONL / JSON / Parquet / CSV file "
        "or a datasets.save_to_disk folder (relative paths are under the data root). Empty: "
        "the demo evaluation set, generated from the demo site into <data_root>/eval."))))
DecontamRunConfig = dagster_config(
    DecontamConfig, index=(str | None, Field(default=None, description=(
        "An index folder from `curate decontam index` (relative paths are under the data "
        "root). Empty: the eval_ngram_index asset's, <data_root>/eval/ngram_index."))))


def eval_dir(data: DataRoot) -> Path:
    return data.path / EVAL_DIR


def eval_index_dir(data: DataRoot) -> Path:
    """Where ``eval_ngram_index`` writes (and ``decontaminated_documents`` reads by default)."""
    return eval_dir(data) / INDEX_DIR


def _library_config(config: dg.Config, model: type[BaseModel], what: str) -> Any:
    """The library's config (its own validation included), or a clear step failure."""
    try:
        return model.model_validate(config.model_dump())
    except ValidationError as exc:
        raise dg.Failure(f"invalid {what} config: {exc}") from None


def _unit(data: DataRoot, upstream_stage: str, name: str, asset: str,
          *extra: Path) -> WorkUnit:
    """The unit over one upstream shard (plus ``extra`` input files); fails when the
    upstream asset has not been materialized for this partition."""
    upstream = data.stage_dir(DATASET, upstream_stage)
    if not (upstream / name).is_file():
        raise dg.Failure(f"{upstream / name} is missing: materialize {asset} first")
    return WorkUnit(name, (upstream / name, *extra), upstream)


def _run(context: dg.AssetExecutionContext, stage: Stage, unit: WorkUnit, data: DataRoot,
         cfg: Any) -> tuple[dg.MaterializeResult, Path, dict[str, Any]]:
    """Materialize one unit; returns the result, the stage folder and the shard's manifest
    entry."""
    out = data.stage_dir(DATASET, stage.name)
    result = materialize_unit(context, stage, unit, out, cfg)
    return result, out, read_manifest(out).shards[unit.name]


def _rejected_path(out: Path, entry: dict[str, Any]) -> Path | None:
    rejected = entry.get("rejected")
    return out / rejected["name"] if rejected else None


def _result(name: str, problems: list[str], **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name, passed=not problems,
        metadata={**metadata, "examples": dg.MetadataValue.json(problems[:TOO_MANY])})


# --- quality signals ---------------------------------------------------------------------------

def _values(table: pa.Table, column: str) -> np.ndarray:
    values = pc.drop_null(table.column(column)).to_numpy()
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def signal_summary(table: pa.Table, rules: list[Rule]) -> str:
    """Per signal column: documents it applies to, min / median / max, and the rule on it
    with the documents that fail it."""
    by_column: dict[str, list[Rule]] = {}
    for rule in rules:
        by_column.setdefault(rule.column, []).append(rule)
    fail = failures(table, rules) if rules else np.zeros((table.num_rows, 0), dtype=bool)
    position = {r.name: k for k, r in enumerate(rules)}
    lines = ["| signal | documents | min | median | max | fineweb rule | failing |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for column in table.column_names:
        values = _values(table, column)
        stats = (f"{values.min():.4g} | {np.median(values):.4g} | {values.max():.4g}"
                 if values.size else "- | - | -")
        own = by_column.get(column, [])
        rule = "<br>".join(f"{r.name} ({r.symbol} {r.threshold:g} fails)" for r in own)
        failing = "<br>".join(str(int(fail[:, position[r.name]].sum())) for r in own)
        lines.append(f"| {column} | {values.size:,} | {stats} | {rule} | {failing} |")
    return "\n".join(lines)


def signal_histograms_png(table: pa.Table, rules: list[Rule],
                          title: str = "quality signals") -> bytes:
    """Histograms of ``HISTOGRAM_SIGNALS`` in a grid, each with its rules' thresholds (a
    threshold far outside the values is named in the legend instead of drawn)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 5.2), dpi=90)
    FigureCanvasAgg(fig)
    for k, column in enumerate(HISTOGRAM_SIGNALS):
        ax = fig.add_subplot(2, 3, k + 1)
        values = _values(table, column) if column in table.column_names else np.zeros(0)
        lo, hi = (values.min(), values.max()) if values.size else (0.0, 1.0)
        if values.size:
            bins: Any = 30
            if column == "q_gopher_word_count" and lo > 0 and hi > 100 * lo:
                bins = np.geomspace(lo, hi * 1.0001, 31)
                ax.set_xscale("log")
            ax.hist(values, bins=bins, color="#4c72b0")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        pad = max(hi - lo, abs(hi), 1e-9) * 0.5
        for rule in (r for r in rules if r.column == column):
            label = f"{rule.symbol} {rule.threshold:g} fails"
            if lo - pad <= rule.threshold <= hi + pad:
                ax.axvline(rule.threshold, color="#c44e52", linestyle="--", label=label)
            else:
                ax.plot([], [], " ", label=f"{label} (off scale)")
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7)
        ax.set_title(column.removeprefix("q_"), fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


@dg.asset(partitions_def=warc_files, group_name=DATASET, kinds={"arrow"},
          deps=[deduplicated_documents], check_specs=contract_checks("quality_signals"),
          description="Per WARC file: the deduplicated documents with the Gopher, C4 and "
                      "FineWeb quality signals as q_* columns (datatrove's arithmetic); rejects "
                      "nothing, so thresholds can change without recomputing them.")
def quality_signals(context: dg.AssetExecutionContext, config: SignalsRunConfig,
                    data: DataRoot) -> dg.MaterializeResult:
    cfg = _library_config(config, SignalsConfig, "quality signals")
    name = shard_name_for(context.partition_key)
    unit = _unit(data, REMOVE.name, name, "deduplicated_documents")
    result, out, _ = _run(context, QUALITY_SIGNALS, unit, data, cfg)
    table = read_shard(out / name, columns=signal_columns(cfg))
    rules = [r for r in PRESETS["fineweb"] if r.column in table.column_names]
    png = signal_histograms_png(table, rules, f"quality signals of {context.partition_key}")
    return dg.MaterializeResult(
        metadata={**(result.metadata or {}),
                  "signals": dg.MetadataValue.md(signal_summary(table, rules)),
                  "signal_histograms": md_image(png, "quality signal histograms")},
        check_results=result.check_results)


# --- quality selection -------------------------------------------------------------------------

def kept_pass_every_rule(shard: Path, rules: list[Rule]) -> dg.AssetCheckResult:
    """No kept document fails a rule of the recipe (re-evaluated on the written shard)."""
    needs_lang = any(r.langs for r in rules)
    columns = ["id", *sorted({r.column for r in rules} | ({"lang"} if needs_lang else set()))]
    table = read_columns(shard, columns)
    if table is None:
        return _result(KEPT_PASS_CHECK, [f"{shard.name} lacks one of the columns {columns}"])
    fail = failures(table, rules)
    per_rule = {r.name: int(n) for r, n in zip(rules, fail.sum(axis=0), strict=True) if n}
    ids = table.column("id").to_pylist()
    names = np.array([r.name for r in rules], dtype=object)
    problems = [f"{ids[i]} fails {', '.join(names[fail[i]])}"
                for i in np.flatnonzero(fail.any(axis=1))]
    return _result(KEPT_PASS_CHECK, problems, kept=table.num_rows, rules=len(rules),
                   failing_by_rule=dg.MetadataValue.json(per_rule))


def _recipe_md(rules: list[Rule]) -> str:
    rows = [f"| {r.name} | {r.column} | {r.symbol} {r.threshold:g} | "
            f"{', '.join(r.langs) or 'all'} |" for r in rules]
    return "\n".join(["| rule | signal | fails when | languages |", "|---|---|---|---|", *rows])


@dg.asset(partitions_def=warc_files, group_name=DATASET, kinds={"arrow"},
          deps=[quality_signals],
          check_specs=[*contract_checks("quality_selected"), dg.AssetCheckSpec(
              KEPT_PASS_CHECK, asset="quality_selected", blocking=True,
              description="Every kept document passes every rule of the recipe (re-evaluated "
                          "on the written shard).")],
          description="Per WARC file: the documents that pass every rule of a selection recipe "
                      "(preset fineweb by default: Gopher repetition and quality, C4 as FineWeb "
                      "runs it, FineWeb's rules); rejected rows carry their first failed rule, "
                      "its value against the threshold and every rule they fail. Metadata: the "
                      "funnel (documents and characters removed per rule) as a table and chart.")
def quality_selected(context: dg.AssetExecutionContext, config: RecipeRunConfig,
                     data: DataRoot) -> dg.MaterializeResult:
    cfg = _library_config(config, Recipe, "quality recipe")
    try:
        rules = resolve(cfg)
    except ValueError as exc:
        raise dg.Failure(f"quality recipe: {exc}") from None
    name = shard_name_for(context.partition_key)
    unit = _unit(data, QUALITY_SIGNALS.name, name, "quality_signals")
    result, out, entry = _run(context, QUALITY_SELECT, unit, data, cfg)
    order = [r.name for r in rules]
    rejected = _rejected_path(out, entry)
    kept_small = read_shard(out / name, columns=["q_chars"])
    rejected_small = ([read_shard(rejected, columns=["q_chars", "reject_reason", "failed_rules"])]
                      if rejected else [])
    funnel = funnel_from([kept_small], rejected_small, list(order))
    corpus = stage_funnel(out, list(order))
    png = funnel_png(funnel, title=f"quality funnel of {context.partition_key}")
    return dg.MaterializeResult(
        metadata={
            **(result.metadata or {}),
            "funnel": dg.MetadataValue.md(funnel.markdown()),
            "funnel_chart": md_image(png, "quality funnel"),
            "removed_by_rule": dg.MetadataValue.json(
                {r.rule: r.first_docs for r in funnel.rows if r.first_docs}),
            "removed_chars_by_rule": dg.MetadataValue.json(
                {r.rule: r.first_chars for r in funnel.rows if r.first_chars}),
            "failing_by_rule": dg.MetadataValue.json(
                {r.rule: r.any_docs for r in funnel.rows if r.any_docs}),
            "documents_in": funnel.docs_in,
            "chars_in": funnel.chars_in,
            "kept_documents": funnel.kept_docs,
            "kept_chars": funnel.kept_chars,
            "kept_share": float(funnel.kept_docs / funnel.docs_in if funnel.docs_in else 0.0),
            "corpus_funnel": dg.MetadataValue.md(
                f"Every shard of {out} so far:\n\n{corpus.markdown()}"),
            "recipe": dg.MetadataValue.md(f"preset **{cfg.preset}**\n\n{_recipe_md(rules)}"),
        },
        check_results=[*(result.check_results or []),
                       kept_pass_every_rule(out / name, rules)])


# --- PII -----------------------------------------------------------------------------------

def pii_counts(paths: list[Path]) -> dict[str, int]:
    """Redactions per kind and ``documents_with_pii`` over shards of the pii stage."""
    totals = dict.fromkeys((*KINDS, "documents_with_pii"), 0)
    for path in paths:
        table = read_columns(path, ["pii_counts", "pii_redactions"])
        if table is None:
            raise dg.Failure(f"{path} has no pii_counts: not the output of the pii stage")
        counts = table.column("pii_counts").combine_chunks()
        for kind in KINDS:
            totals[kind] += int(pc.sum(counts.field(kind)).as_py() or 0)
        totals["documents_with_pii"] += int(
            pc.sum(pc.greater(table.column("pii_redactions"), 0)).as_py() or 0)
    return totals


def no_pii_left(shard: Path, cfg: PiiConfig) -> dg.AssetCheckResult:
    """The redaction's own detectors find nothing in the kept shard (placeholders masked)."""
    table = read_shard(shard, columns=["id", *cfg.columns])
    ids = table.column("id").combine_chunks()
    problems: list[str] = []
    found = 0
    for column in cfg.columns:
        texts = table.column(column).combine_chunks()
        rows = np.flatnonzero(candidate_mask(texts, cfg.kinds))
        for row, text in zip(rows.tolist(), texts.take(pa.array(rows)).to_pylist(), strict=True):
            left = residual_findings(text, cfg) if text else []
            found += len(left)
            problems += [f"{ids[row].as_py()} {column}: {f.kind} {text[f.start:f.end]!r}"
                         for f in left]
    return _result(NO_PII_CHECK, problems, findings=found, documents=table.num_rows)


@dg.asset(partitions_def=warc_files, group_name=DATASET, kinds={"arrow"},
          deps=[quality_selected],
          check_specs=[*contract_checks("pii_redacted"), dg.AssetCheckSpec(
              NO_PII_CHECK, asset="pii_redacted", blocking=True,
              description="The detectors find no PII left in the kept shard.")],
          description="Per WARC file: the selected documents with emails, phone numbers, IP "
                      "addresses, card numbers (Luhn) and IBANs (mod 97) replaced by typed "
                      "placeholders; pii_counts per kind and pii_redactions per document.")
def pii_redacted(context: dg.AssetExecutionContext, config: PiiRunConfig,
                 data: DataRoot) -> dg.MaterializeResult:
    cfg = _library_config(config, PiiConfig, "pii")
    name = shard_name_for(context.partition_key)
    unit = _unit(data, QUALITY_SELECT.name, name, "quality_selected")
    result, out, entry = _run(context, PII, unit, data, cfg)
    rejected = _rejected_path(out, entry)
    totals = pii_counts([out / name, *([rejected] if rejected else [])])
    by_kind = {k: totals[k] for k in KINDS}
    table = "\n".join(["| kind | redactions |", "|---|---:|",
                       *(f"| {k} | {n:,} |" for k, n in by_kind.items())])
    return dg.MaterializeResult(
        metadata={**(result.metadata or {}),
                  "pii_by_kind": dg.MetadataValue.json(by_kind),
                  "redactions": sum(by_kind.values()),
                  "documents_with_pii": totals["documents_with_pii"],
                  "pii_table": dg.MetadataValue.md(table)},
        check_results=[*(result.check_results or []), no_pii_left(out / name, cfg)])


# --- evaluation index --------------------------------------------------------------------------

def _eval_source(data: DataRoot, spec: str) -> EvalSource:
    source = EvalSource.parse(spec)
    path = source.path.expanduser()
    return EvalSource(source.name, path if path.is_absolute() else data.path / path)


def _index_current(out: Path, sources: list[EvalSource], cfg: IndexConfig) -> bool:
    """True when ``out`` holds an index of exactly these files (same bytes) and settings."""
    try:
        meta = json.loads((out / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if meta.get("config") != cfg.model_dump(mode="json") or not all(
            (out / f).is_file() for f in meta.get("files", {})):
        return False
    recorded = [(s["name"], s["path"], s["sha256"]) for s in meta.get("sources", [])]
    if any(not s.path.is_file() for s in sources):
        return False  # folders: rebuilt each time (cheap next to the documents)
    return recorded == [(s.name, str(s.path), sha256_file(s.path)) for s in sources]


def _sets_md(eval_sets: list[dict[str, Any]]) -> str:
    rows = [f"| {s['name']} | {s['items']:,} | {s.get('items_without_ngrams', 0):,} | "
            f"{s['ngrams']:,} |" for s in eval_sets]
    return "\n".join(["| eval set | items | items shorter than n words | n-grams |",
                      "|---|---:|---:|---:|", *rows])


@dg.asset(group_name=DATASET, kinds={"numpy"}, deps=[demo_site],
          description="Global: the n-gram index (13 words by default) of the evaluation sets "
                      "that no training document may overlap, at <data_root>/eval/ngram_index. "
                      "Without eval_sets: a 20-item demo set generated from the demo site, two "
                      "of whose items quote crawled articles (planted contamination). "
                      "Unchanged files and settings reuse the index.")
def eval_ngram_index(context: dg.AssetExecutionContext, config: EvalIndexRunConfig,
                     data: DataRoot) -> dg.MaterializeResult:
    settings = config.model_dump()
    specs = settings.pop("eval_sets")
    try:
        cfg = IndexConfig.model_validate(settings)
    except ValidationError as exc:
        raise dg.Failure(f"invalid eval index config: {exc}") from None
    planted: list[dict[str, Any]] = []
    if specs:
        sources = [_eval_source(data, s) for s in specs]
    else:
        manifest = data.path / "demo" / "site_manifest.json"
        if not manifest.is_file():
            raise dg.Failure("no eval_sets given and no demo site to build the demo set from: "
                             "materialize demo_site, or give eval_sets")
        demo = write_demo_eval(eval_dir(data), manifest)
        sources = [EvalSource(EVAL_NAME, demo.path)]
        planted = demo.info["planted"]
    out = eval_index_dir(data)
    reused = _index_current(out, sources, cfg)
    if reused:
        context.log.info("evaluation sets and settings unchanged: index reused")
    else:
        try:
            context.log.info(build_index(sources, out, cfg).summary())
        except (ValueError, FileNotFoundError) as exc:
            raise dg.Failure(f"eval_ngram_index: {exc}") from None
    meta = json.loads((out / INDEX_FILE).read_text(encoding="utf-8"))
    counts = meta["counts"]
    return dg.MaterializeResult(metadata={
        "items": counts["items"],
        "ngrams": counts["ngrams"],
        "items_without_ngrams": counts["items_without_ngrams"],
        "n": meta["n"],
        "eval_sets": dg.MetadataValue.md(_sets_md(meta["eval_sets"])),
        "sources": dg.MetadataValue.json([{k: s[k] for k in ("name", "path", "sha256")}
                                          for s in meta["sources"]]),
        "planted_items": dg.MetadataValue.json(planted),
        "rebuilt": not reused,
        "index_sha256": sha256_file(out / INDEX_FILE),
        "path": dg.MetadataValue.path(str(out)),
    })


# --- decontamination ---------------------------------------------------------------------------

def decontam_config(config: dg.Config, data: DataRoot) -> DecontamConfig:
    """The library's config with the index folder resolved (default: ``eval_ngram_index``'s)."""
    settings = config.model_dump()
    folder = Path(settings["index"]).expanduser() if settings["index"] else None
    settings["index"] = str(data.path / folder if folder else eval_index_dir(data))
    try:
        cfg = DecontamConfig.model_validate(settings)
    except ValidationError as exc:
        raise dg.Failure(f"invalid decontaminate config: {exc}") from None
    if not (Path(cfg.index) / INDEX_FILE).is_file():
        raise dg.Failure(f"{cfg.index} has no {INDEX_FILE}: materialize eval_ngram_index first "
                         "(or give an index folder)")
    return cfg


def no_contamination_passes(stage_dir: Path, cfg: DecontamConfig,
                            shard: str | None = None) -> dg.AssetCheckResult:
    """No kept document of ``shard`` (default: of any shard) shares ``min_ngram_hits``
    n-grams with the index, by ``uncaught_contamination``'s independent path (in flag mode:
    every such document is flagged). Other shards' findings are listed, not failed on."""
    found = uncaught_contamination(stage_dir, cfg)
    mine = {k: v for k, v in found.items() if shard is None or k == shard}
    others = {k: v for k, v in found.items() if k not in mine}
    problems = [f"{name}: {n} contaminated document(s) kept" for name, n in sorted(mine.items())]
    return _result(NO_CONTAMINATION_CHECK, problems, uncaught=sum(mine.values()),
                   other_shards=dg.MetadataValue.json(others), mode=cfg.mode,
                   min_ngram_hits=cfg.min_ngram_hits)


def shard_hits(out: Path, name: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The contaminated documents of one shard: id, url, n-gram matches, item keys."""
    columns = ["id", "url", "contamination_ngrams", "contamination_hits"]
    found: list[dict[str, Any]] = []
    rejected = _rejected_path(out, entry)
    if rejected is not None:
        table = read_columns(rejected, [*columns, "reject_reason"])
        if table is not None:
            found += table.filter(pc.equal(table.column("reject_reason"), CONTAMINATED)) \
                .select(columns).to_pylist()
    kept = read_columns(out / name, [*columns, CONTAMINATED])
    if kept is not None:
        found += kept.filter(kept.column(CONTAMINATED)).select(columns).to_pylist()
    return found


def _hits_md(hits: list[dict[str, Any]]) -> str:
    if not hits:
        return "no document of this shard overlaps an evaluation item"
    rows = [f"| {', '.join(h['contamination_hits'])} | {h['url'] or h['id']} | "
            f"{h['contamination_ngrams']} |" for h in hits]
    return "\n".join(["| eval items | document | matching n-grams |", "|---|---|---:|", *rows])


@dg.asset(partitions_def=warc_files, group_name=DATASET, kinds={"arrow"},
          deps=[pii_redacted, eval_ngram_index],
          check_specs=[*contract_checks("decontaminated_documents"), dg.AssetCheckSpec(
              NO_CONTAMINATION_CHECK, asset="decontaminated_documents", blocking=True,
              description="No kept document shares min_ngram_hits n-grams with an evaluation "
                          "item (re-checked by an independent path: every hash materialised "
                          "and looked up with np.isin).")],
          description="Per WARC file: the curated web documents: PII-redacted documents that "
                      "share no n-gram with an evaluation set (mode remove; flag keeps them with "
                      "contaminated). Removed rows carry the eval items they hit; "
                      "_decontamination.json beside the shards reports every item hit. The "
                      "tokenizer and the token shards read this stage.")
def decontaminated_documents(context: dg.AssetExecutionContext, config: DecontamRunConfig,
                             data: DataRoot) -> dg.MaterializeResult:
    cfg = decontam_config(config, data)
    name = shard_name_for(context.partition_key)
    unit = _unit(data, PII.name, name, "pii_redacted", Path(cfg.index) / INDEX_FILE)
    result, out, entry = _run(context, DECONTAMINATE, unit, data, cfg)
    report = decontamination_report(out, cfg.index)
    report_path = write_report(out, report)
    hits = shard_hits(out, name, entry)
    items: dict[str, list[str]] = {}
    for hit in hits:
        for key in hit["contamination_hits"]:
            items.setdefault(key, []).append(hit["url"] or hit["id"])
    sets_md = "\n".join(["| eval set | items | items hit | documents |", "|---|---:|---:|---:|",
                         *(f"| {n} | {s['items'] if s['items'] is not None else '?'} | "
                           f"{s['items_hit']:,} | {s['documents']:,} |"
                           for n, s in report["eval_sets"].items())])
    return dg.MaterializeResult(
        metadata={**(result.metadata or {}),
                  "contaminated_documents": len(hits),
                  "items_hit": dg.MetadataValue.json(dict(sorted(items.items()))),
                  "contamination": dg.MetadataValue.md(_hits_md(hits)),
                  "eval_sets": dg.MetadataValue.md(
                      f"Every shard of {out} so far:\n\n{sets_md}"),
                  "report": dg.MetadataValue.path(str(report_path)),
                  "index": dg.MetadataValue.path(cfg.index)},
        check_results=[*(result.check_results or []),
                       no_contamination_passes(out, cfg, name)])


# --- the demo's summary ------------------------------------------------------------------------

def curation_totals(data: DataRoot) -> list[str]:
    """The funnel, PII and decontamination of the web corpus in two lines (for ``make demo``)."""
    select_dir = data.stage_dir(DATASET, QUALITY_SELECT.name)
    decontam_dir = data.stage_dir(DATASET, CURATED_STAGE)
    pii_dir = data.stage_dir(DATASET, PII.name)
    if any(read_manifest(d) is None for d in (select_dir, pii_dir, decontam_dir)):
        return ["  quality/pii/decontamination: not run"]
    funnel = stage_funnel(select_dir)
    share = funnel.kept_docs / funnel.docs_in if funnel.docs_in else 0.0
    removed = ", ".join(f"{r.rule} {r.first_docs}" for r in funnel.rows if r.first_docs)
    from schemas.dataset import shard_paths

    pii = pii_counts([*shard_paths(pii_dir), *shard_paths(pii_dir, rejected=True)])
    report = decontamination_report(decontam_dir)
    hit = len(report["items"])
    return [f"  quality: {funnel.docs_in} documents in, {funnel.kept_docs} kept ({share:.1%}); "
            f"removed {removed or 'none'}",
            f"  pii: {sum(pii[k] for k in KINDS)} redactions in {pii['documents_with_pii']} "
            f"documents; decontamination: {report['documents_contaminated']} documents removed, "
            f"{hit} eval item(s) hit"]


QUALITY_ASSETS = [quality_signals, quality_selected, pii_redacted, eval_ngram_index,
                  decontaminated_documents]
"""This module's assets, for the ``Definitions`` and the demo."""
CURATION_CHAIN = [quality_signals, quality_selected, pii_redacted, decontaminated_documents]
"""The per-partition assets, in the order one run materializes them."""
