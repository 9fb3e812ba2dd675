"""The curation assets on the demo site: the dedup chain (tests/test_dagster_dedup.py), then
the evaluation index and, per WARC partition, quality signals -> selection -> PII redaction ->
decontamination, materialized through the UI's Definitions. The site's spam and thin pages are
removed by named quality rules, the two eval items planted from crawled articles are caught
and reported, the funnel is in the metadata and in `curate stats`, and a contaminated document
slipped into the kept shard fails the blocking check."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from curate.decontaminate import REPORT_FILE, DecontamConfig
from curate.demo_eval import EVAL_NAME, INFO_FILE, ITEMS_FILE
from curate.pii import KINDS, PiiConfig, find_pii
from curate.quality.cli import stats
from curate.quality.rules import Recipe, RuleSpec, resolve
from curate.quality.signals import SignalsConfig
from dagster_project.assets.quality import (
    PiiRunConfig,
    RecipeRunConfig,
    SignalsRunConfig,
    kept_pass_every_rule,
    no_contamination_passes,
    no_pii_left,
)
from schemas import DOCUMENTS, read_shard, write_shard
from schemas.verify import verify_stage
from tests.test_dagster_dedup import SHARD
from tests.test_dagster_dedup import chain as dedup_chain  # noqa: F401  (a fixture)

KEY = "crawl-00000.warc.gz"
PNG = b"\x89PNG\r\n\x1a\n"
CURATION = ["quality_signals", "quality_selected", "pii_redacted", "decontaminated_documents"]


@pytest.fixture(scope="module")
def chain(dedup_chain):  # noqa: F811  (the dedup chain, extended)
    dedup_chain.must("eval_index", ["eval_ngram_index"])
    dedup_chain.must("curation", CURATION, KEY)
    return dedup_chain


def _meta(result, node: str) -> dict:
    (mat,) = result.asset_materializations_for_node(node)
    return mat.metadata


def _site(root: Path) -> dict:
    return json.loads((root / "demo" / "site_manifest.json").read_text())


def _png(value: str, alt: str) -> bytes:
    prefix = f"![{alt}](data:image/png;base64,"
    assert value.startswith(prefix) and value.endswith(")")
    return base64.b64decode(value[len(prefix):-1])


def _failure(result) -> str:
    assert not result.success
    return " ".join(str(e.event_specific_data.error.message) for e in result.all_events
                    if e.is_step_failure)


def test_checks_pass_and_stages_verify(chain):
    evaluations = [(e.asset_key.to_user_string(), e.check_name, e.passed)
                   for e in chain.results["curation"].get_asset_check_evaluations()]
    assert all(passed for _, _, passed in evaluations), evaluations
    assert {(a, c) for a, c, _ in evaluations} == {
        *((a, c) for a in CURATION for c in ("schema", "rows_conserved")),
        ("quality_selected", "kept_pass_every_rule"), ("pii_redacted", "no_pii_left"),
        ("decontaminated_documents", "no_contamination_passes")}
    web = chain.root / "web"
    for stage in ("quality_signals", "quality_select", "pii", "decontaminate"):
        assert verify_stage(web / stage).ok, stage
    # rows flow from one stage to the next: each reads what the previous one kept
    kept = {s: read_shard(web / s / SHARD).num_rows
            for s in ("dedup", "quality_signals", "quality_select", "pii", "decontaminate")}
    assert kept["quality_signals"] == kept["dedup"]
    meta = {n: _meta(chain.results["curation"], n) for n in CURATION}
    assert meta["quality_selected"]["rows_in"].value == kept["quality_signals"]
    assert meta["pii_redacted"]["rows_in"].value == kept["quality_select"]
    assert meta["decontaminated_documents"]["rows_in"].value == kept["pii"]
    assert kept["decontaminate"] < kept["pii"] < kept["dedup"]
    signals = read_shard(web / "quality_signals" / SHARD).column_names
    assert "q_gopher_word_count" in signals and "q_fineweb_line_punct_ratio" in signals


def test_spam_and_thin_pages_are_removed_by_named_rules(chain):
    web = chain.root / "web"
    kinds = {p["url"]: p["kind"] for p in _site(chain.root)["pages"]}
    before = read_shard(web / "dedup" / SHARD, columns=["url"]).column("url").to_pylist()
    kept = set(read_shard(web / "quality_select" / SHARD, columns=["url"]).column("url")
               .to_pylist())
    rejected = {r["url"]: r for r in read_shard(web / "quality_select" / "rejected" / SHARD)
                .select(["url", "reject_reason", "reject_detail", "failed_rules"]).to_pylist()}
    rules = {r.name: r for r in resolve(Recipe())}
    for kind in ("spam", "thin"):
        pages = [u for u in before if kinds.get(u) == kind]
        assert pages, f"no {kind} page reached the quality stage"
        for url in pages:
            assert url in rejected, url
            row = rejected[url]
            rule = rules[row["reject_reason"]]
            assert row["reject_detail"].startswith(f"{rule.column} ")
            assert row["reject_reason"] == row["failed_rules"][0]
    assert {rejected[u]["reject_reason"] for u in before if kinds.get(u) == "thin"} \
        == {"gopher_short_doc"}
    assert all(u in kept for u in before if kinds.get(u) == "article")


def test_funnel_is_in_the_metadata_and_in_curate_stats(chain):
    meta = _meta(chain.results["curation"], "quality_selected")
    removed = meta["removed_by_rule"].value
    assert sum(removed.values()) == meta["rows_rejected"].value > 0
    assert meta["documents_in"].value == meta["rows_in"].value
    assert meta["kept_documents"].value == meta["rows_kept"].value
    assert {"gopher_short_doc", "gopher_too_few_stop_words"} <= set(removed)
    assert set(meta["removed_chars_by_rule"].value) == set(removed)
    funnel = meta["funnel"].value
    assert all(f"| {rule} | {n:,} |" in funnel for rule, n in removed.items())
    assert "corpus_funnel" in meta and "gopher_short_doc" in meta["corpus_funnel"].value
    assert _png(meta["funnel_chart"].value, "quality funnel").startswith(PNG)
    assert "preset **fineweb**" in meta["recipe"].value

    signals = _meta(chain.results["curation"], "quality_signals")
    assert _png(signals["signal_histograms"].value,
                "quality signal histograms").startswith(PNG)
    assert "| q_gopher_word_count | " in signals["signals"].value

    out = CliRunner().invoke(stats, [str(chain.root / "web" / "quality_select")])
    assert out.exit_code == 0, out.output
    assert all(f"| {rule} | {n:,} |" in out.output for rule, n in removed.items())
    assert f"**{meta['kept_documents'].value:,}**" in out.output


def test_the_demo_site_holds_no_pii_and_none_is_counted(chain):
    site = _site(chain.root)
    assert not [p["path"] for p in site["pages"] if find_pii(p["text"])]
    meta = _meta(chain.results["curation"], "pii_redacted")
    assert meta["pii_by_kind"].value == dict.fromkeys(KINDS, 0)
    assert meta["redactions"].value == 0 and meta["documents_with_pii"].value == 0
    table = read_shard(chain.root / "web" / "pii" / SHARD)
    assert {"pii_counts", "pii_redactions"} <= set(table.column_names)
    assert sum(table.column("pii_redactions").to_pylist()) == 0


def test_planted_pii_fails_no_pii_left(chain, tmp_path):
    shard = tmp_path / SHARD
    table = read_shard(chain.root / "web" / "pii" / SHARD)
    text = table.column("text").to_pylist()
    text[0] += " Write to jane.doe@example.org or call +44 20 7946 0958."
    write_shard(table.set_column(table.schema.get_field_index("text"), "text",
                                 pa.array(text, pa.string())), shard, DOCUMENTS)
    result = no_pii_left(shard, PiiConfig())
    assert not result.passed and result.metadata["findings"].value == 2
    assert no_pii_left(chain.root / "web" / "pii" / SHARD, PiiConfig()).passed


def test_planted_eval_overlap_is_caught_and_reported(chain):
    eval_dir = chain.root / "eval"
    info = json.loads((eval_dir / INFO_FILE).read_text())
    planted = info["planted"]
    assert info["items"] == 20 and len(planted) == 2
    items = [json.loads(line) for line in (eval_dir / ITEMS_FILE).read_text().splitlines()]
    assert [i["id"] for i in items] == [f"qa-{n:03d}" for n in range(1, 21)]
    assert all(len(i["passage"].split()) >= 13 for i in items if "passage" in i)

    index_meta = _meta(chain.results["eval_index"], "eval_ngram_index")
    assert index_meta["items"].value == 20 and index_meta["planted_items"].value == planted

    web = chain.root / "web" / "decontaminate"
    rejected = read_shard(web / "rejected" / SHARD).to_pylist()
    assert {r["reject_reason"] for r in rejected} == {"contaminated"}
    assert sorted(r["url"] for r in rejected) == sorted(p["url"] for p in planted)
    for row in rejected:
        (key,) = row["contamination_hits"]
        assert key == next(p["key"] for p in planted if p["url"] == row["url"])
        assert row["contamination_ngrams"] >= 1
    kept_urls = set(read_shard(web / SHARD, columns=["url"]).column("url").to_pylist())
    assert not kept_urls & {p["url"] for p in planted}

    meta = _meta(chain.results["curation"], "decontaminated_documents")
    assert meta["contaminated_documents"].value == 2
    assert meta["items_hit"].value == {p["key"]: [p["url"]] for p in planted}
    assert all(p["key"] in meta["contamination"].value for p in planted)
    report = json.loads((web / REPORT_FILE).read_text())
    assert sorted(report["items"]) == sorted(p["key"] for p in planted)
    assert report["eval_sets"][EVAL_NAME] == {"items": 20, "items_hit": 2, "documents": 2}


def test_a_contaminated_document_in_the_kept_shard_fails_the_check(chain, tmp_path):
    web = chain.root / "web" / "decontaminate"
    cfg = DecontamConfig(index=str(chain.root / "eval" / "ngram_index"))
    assert no_contamination_passes(web, cfg, SHARD).passed

    copy = tmp_path / "decontaminate"
    shutil.copytree(web, copy)
    kept = read_shard(copy / SHARD)
    leaked = read_shard(copy / "rejected" / SHARD).select(kept.column_names).cast(kept.schema)
    write_shard(pa.concat_tables([kept, leaked]), copy / SHARD, DOCUMENTS)
    result = no_contamination_passes(copy, cfg, SHARD)
    assert not result.passed
    assert result.metadata["uncaught"].value == leaked.num_rows == 2
    assert SHARD in result.metadata["examples"].value[0]


def test_kept_pass_every_rule_catches_a_failing_document(chain, tmp_path):
    rules = resolve(Recipe())
    selected = chain.root / "web" / "quality_select" / SHARD
    assert kept_pass_every_rule(selected, rules).passed
    kept = read_shard(selected)
    spam = read_shard(chain.root / "web" / "quality_select" / "rejected" / SHARD)
    shard = tmp_path / SHARD
    write_shard(pa.concat_tables([kept, spam.select(kept.column_names).cast(kept.schema)]),
                shard, DOCUMENTS)
    result = kept_pass_every_rule(shard, rules)
    assert not result.passed and len(result.metadata["examples"].value) > 0


def test_rerun_reuses_the_index_and_the_shards(chain):
    index = _meta(chain.must("eval_index again", ["eval_ngram_index"]), "eval_ngram_index")
    assert index["rebuilt"].value is False
    again = chain.must("curation again", CURATION, KEY)
    for node in CURATION:
        assert _meta(again, node)["recomputed"].value is False, node
    assert all(e.passed for e in again.get_asset_check_evaluations())


def test_bad_config_is_a_clear_failure(chain):
    bad_op = {"ops": {"quality_selected": {"config": {
        "rules": {"gopher_short_doc": {"op": "between"}}}}}}
    assert "invalid quality recipe config" in _failure(
        chain.run(["quality_selected"], KEY, run_config=bad_op))
    new_rule = {"ops": {"quality_selected": {"config": {"rules": {"short": {"threshold": 3}}}}}}
    assert "a new rule needs column, op" in _failure(
        chain.run(["quality_selected"], KEY, run_config=new_rule))
    nowhere = {"ops": {"decontaminated_documents": {"config": {"index": "nowhere"}}}}
    assert "nowhere has no index.json" in _failure(
        chain.run(["decontaminated_documents"], KEY, run_config=nowhere))
    missing = {"ops": {"eval_ngram_index": {"config": {"eval_sets": ["eval/missing.jsonl"]}}}}
    assert "evaluation set not found" in _failure(
        chain.run(["eval_ngram_index"], run_config=missing))


def test_launchpad_configs_are_the_library_configs():
    assert SignalsConfig.model_validate(SignalsRunConfig().model_dump()) == SignalsConfig()
    assert PiiConfig.model_validate(PiiRunConfig().model_dump()) == PiiConfig()
    assert Recipe.model_validate(RecipeRunConfig().model_dump()) == Recipe()
    changed = RecipeRunConfig(rules={"gopher_short_doc": {"threshold": 30},
                                     "long": {"column": "q_chars", "op": "max",
                                              "threshold": 5e5}})
    assert Recipe.model_validate(changed.model_dump()) == Recipe(rules={
        "gopher_short_doc": RuleSpec(threshold=30),
        "long": RuleSpec(column="q_chars", op="max", threshold=5e5)})
