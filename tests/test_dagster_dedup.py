"""The dedup assets on the demo site: demo site -> crawl -> extract -> langid -> signatures ->
clusters -> deduplicated documents, materialized through the UI's Definitions. The duplicates
the generator planted (an exact copy under /print/, edited copies under /archive/) are the
removals, each naming its original's document id, and nothing else is removed."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.assets.dedup import DedupRunConfig
from dagster_project.definitions import defs
from dagster_project.resources import DataRoot
from schemas import read_shard
from schemas.verify import verify_stage

SHARD = "part-crawl-00000.warc.gz.arrow"
ASSETS = list(defs.assets)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chain:
    """One materialized chain: the data root, the instance and every run's result."""

    def __init__(self, root: Path, instance: dg.DagsterInstance) -> None:
        self.root = root
        self.instance = instance
        self.resources = {"data": DataRoot(root=str(root))}
        self.results: dict[str, dg.ExecuteInJobResult] = {}

    def run(self, selection: list[str], partition_key: str | None = None,
            run_config: dict | None = None) -> dg.ExecuteInJobResult:
        return dg.materialize(ASSETS, selection=selection, partition_key=partition_key,
                              instance=self.instance, resources=self.resources,
                              run_config=run_config, raise_on_error=False)

    def must(self, label: str, *args, **kwargs) -> dg.ExecuteInJobResult:
        result = self.run(*args, **kwargs)
        failures = [str(e.event_specific_data.error.message) for e in result.all_events
                    if e.is_step_failure]
        assert result.success, f"{label}: {failures}"
        self.results[label] = result
        return result


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("dedup") / "data"
    with dg.instance_for_test() as instance:
        c = Chain(root, instance)
        base_url = f"http://127.0.0.1:{_free_port()}"  # not the default: tests may run side by side
        c.must("site", ["demo_site"],
               run_config={"ops": {"demo_site": {"config": {"base_url": base_url}}}})
        c.must("crawl", ["crawled_warcs"])
        keys = instance.get_dynamic_partitions("warc_files")
        assert keys == ["crawl-00000.warc.gz"]
        c.must("per_shard", ["extracted_documents", "language_tagged_documents",
                             "dedup_signatures"], keys[0])
        c.must("clusters", ["dedup_clusters"])
        c.must("dedup", ["deduplicated_documents"], keys[0])
        yield c


def _pairs(root: Path) -> tuple[list[dict], dict[str, int], dict[str, str]]:
    """The planted duplicates whose copy and original both survived langid, and the langid
    shard's row and document id of every URL (document ids are the WARC-Record-IDs)."""
    site = json.loads((root / "demo" / "site_manifest.json").read_text())
    tagged = read_shard(root / "web" / "langid" / SHARD)
    urls = tagged.column("url").to_pylist()
    row = {u: i for i, u in enumerate(urls)}
    ids = dict(zip(urls, tagged.column("id").to_pylist(), strict=True))
    pairs = []
    for page in site["pages"]:
        if page["duplicate_of"] is None:
            continue
        original = site["base_url"] + page["duplicate_of"]
        if page["url"] in row and original in row:
            pairs.append({**page, "original_url": original})
    return pairs, row, ids


def _keeper_and_removed(pair: dict, row: dict[str, int]) -> tuple[str, str]:
    """keep: first keeps the earlier row: the original, unless the crawl fetched the copy
    first (both are two links from the home page)."""
    copy, original = pair["url"], pair["original_url"]
    return (original, copy) if row[original] < row[copy] else (copy, original)


def _removed(root: Path) -> dict[str, dict]:
    rejected = read_shard(root / "web" / "dedup" / "rejected" / SHARD)
    return {r["url"]: r for r in rejected.select(["url", "reject_reason", "duplicate_of"])
            .to_pylist()}


def test_planted_duplicates_are_removed(chain):
    pairs, row, ids = _pairs(chain.root)
    removed = _removed(chain.root)
    exact = [p for p in pairs if p["exact_duplicate"]]
    near = [p for p in pairs if not p["exact_duplicate"]]
    assert exact and all(p["path"].startswith("/print/") for p in exact)
    assert len(near) >= 5 and all(p["path"].startswith("/archive/") for p in near)

    for pair in exact:
        keeper, gone = _keeper_and_removed(pair, row)
        assert gone in removed, gone
        assert removed[gone]["reject_reason"] == "exact_duplicate"
        assert removed[gone]["duplicate_of"] == ids[keeper]
        assert keeper not in removed

    caught = 0
    for pair in near:
        keeper, gone = _keeper_and_removed(pair, row)
        assert keeper not in removed, keeper
        if gone in removed:
            assert removed[gone]["reject_reason"] == "near_duplicate", gone
            assert removed[gone]["duplicate_of"] == ids[keeper], gone
            caught += 1
    assert caught >= 0.8 * len(near), f"{caught} of {len(near)} near-duplicates caught"

    involved = {p["url"] for p in pairs} | {p["original_url"] for p in pairs}
    assert set(removed) <= involved, set(removed) - involved

    kept = read_shard(chain.root / "web" / "dedup" / SHARD)
    tagged = read_shard(chain.root / "web" / "langid" / SHARD)
    assert kept.num_rows + len(removed) == tagged.num_rows
    assert {"dup_cluster", "dup_cluster_size"} <= set(kept.column_names)


def test_checks_pass_and_metadata_is_reported(chain):
    evaluations = [(e.asset_key.to_user_string(), e.check_name, e.passed)
                   for r in chain.results.values() for e in r.get_asset_check_evaluations()]
    assert all(passed for _, _, passed in evaluations), evaluations
    names = {(asset, check) for asset, check, _ in evaluations}
    assert {("dedup_signatures", "schema"), ("dedup_signatures", "rows_conserved"),
            ("dedup_clusters", "clusters_cover_all_shards"),
            ("deduplicated_documents", "schema"),
            ("deduplicated_documents", "rows_conserved")} <= names

    (mat,) = chain.results["clusters"].asset_materializations_for_node("dedup_clusters")
    meta = mat.metadata
    removed = meta["removed_by_reason"].value
    assert removed["exact_duplicate"] >= 1 and removed["near_duplicate"] >= 1
    assert meta["removed"].value == sum(removed.values())
    assert meta["clusters"].value >= 1
    assert meta["documents"].value == read_shard(chain.root / "web" / "langid" / SHARD).num_rows
    assert SHARD in meta["per_shard"].value and "duplicate rate" in meta["per_shard"].value
    image = meta["cluster_sizes"].value
    prefix = "![cluster sizes](data:image/png;base64,"
    assert image.startswith(prefix) and image.endswith(")")
    assert base64.b64decode(image[len(prefix):-1]).startswith(b"\x89PNG\r\n\x1a\n")

    (doc,) = chain.results["dedup"].asset_materializations_for_node("deduplicated_documents")
    rate = doc.metadata["duplicate_rate"].value
    assert rate == pytest.approx(doc.metadata["rows_rejected"].value
                                 / doc.metadata["rows_in"].value)
    assert 0 < rate < 0.5

    for stage in ("dedup_signatures", "dedup_clusters", "dedup"):
        assert verify_stage(chain.root / "web" / stage).ok, stage


def test_rerun_reuses_and_mismatched_config_is_refused(chain):
    again = chain.must("clusters again", ["dedup_clusters"])
    (mat,) = again.asset_materializations_for_node("dedup_clusters")
    assert mat.metadata["recomputed"].value is False

    def failure(result: dg.ExecuteInJobResult) -> str:
        assert not result.success
        return " ".join(str(e.event_specific_data.error.message) for e in result.all_events
                        if e.is_step_failure)

    key = "crawl-00000.warc.gz"
    other_ngram = {"ops": {"dedup_clusters": {"config": {"ngram": 3}}}}
    assert "dedup_signatures" in failure(chain.run(["dedup_clusters"], run_config=other_ngram))
    other_keep = {"ops": {"deduplicated_documents": {"config": {"keep": "longest"}}}}
    assert "dedup_clusters is out of date" in failure(
        chain.run(["deduplicated_documents"], key, run_config=other_keep))
    bad = {"ops": {"deduplicated_documents": {"config": {"keep": "score"}}}}
    assert "score_column" in failure(chain.run(["deduplicated_documents"], key, run_config=bad))


def test_launchpad_config_is_the_dedup_config():
    from curate.dedup.config import DedupConfig

    assert set(DedupRunConfig.model_fields) == set(DedupConfig.model_fields)
    assert DedupRunConfig().model_dump() == DedupConfig().model_dump()
