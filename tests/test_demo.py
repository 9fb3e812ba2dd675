"""`make demo`'s job end to end: the demo site lands, every partition is ingested through the
UI's Definitions, and the broken records the generator planted are exactly the rejections."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from schemas import read_shard
from schemas.verify import verify_stage

from .conftest import PROJECT_ROOT


@pytest.mark.slow
def test_demo_materializes_the_graph(tmp_path):
    data, home = tmp_path / "data", tmp_path / "dagster_home"
    env = {**os.environ, "SIEVELM_DATA_ROOT": str(data), "DAGSTER_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "dagster_project.demo"], capture_output=True,
                          text=True, env=env, cwd=PROJECT_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "asset checks: 46/46 passed" in proc.stdout
    assert "quality: 62 documents in, 40 kept" in proc.stdout  # the funnel line
    assert "2 documents removed, 2 eval item(s) hit" in proc.stdout  # planted overlap
    assert "labelled sft: 239 rows in" in proc.stdout  # the labelled sets went through
    assert "domain model: general loss" in proc.stdout  # base model, then CPT, trained

    stage = data / "web" / "ingest"
    assert verify_stage(stage).ok
    planted = json.loads((data / "demo" / "raw" / "broken_rows.json").read_text())
    for name, info in planted.items():
        shard = f"part-demo__{name}.arrow"
        kept = read_shard(stage / shard)
        rejected = read_shard(stage / "rejected" / shard)
        assert sorted(kept.column("id").to_pylist()) == sorted(info["good_ids"])
        got = sorted(zip(rejected.column("source_row").to_pylist(),
                         rejected.column("reject_reason").to_pylist(), strict=True))
        want = sorted((b.get("row", b.get("line")), b["kind"]) for b in info["broken"])
        assert got == want, name

    # the crawl over loopback: robots.txt obeyed, every allowed page extracted and tagged
    site = json.loads((data / "demo" / "site_manifest.json").read_text())
    allowed = {p["url"] for p in site["pages"] if p["allowed"]}
    tagged = read_shard(data / "web" / "langid" / "part-crawl-00000.warc.gz.arrow")
    extracted = read_shard(data / "web" / "extract" / "part-crawl-00000.warc.gz.arrow")
    urls = set(extracted.column("url").to_pylist())
    assert not any("/private/" in u for u in urls)
    assert urls == allowed
    langs = dict(zip(tagged.column("url").to_pylist(), tagged.column("lang").to_pylist(),
                     strict=True))
    for page in site["pages"]:
        if page["kind"] in {"article", "foreign"} and page["url"] in langs:
            assert langs[page["url"]] == page["lang"], page["url"]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("warc_files") == ["crawl-00000.warc.gz"]
        keys = instance.get_dynamic_partitions("raw_files")
        assert keys == ["demo/articles.csv", "demo/articles.jsonl"]
        records = instance.fetch_materializations(dg.AssetKey("raw_documents"), limit=10).records
        assert {r.partition_key for r in records} == set(keys)
