"""The Dagster UI as a user sees it: ``dagster dev`` on loopback with a temporary
``DAGSTER_HOME``, runs launched through its GraphQL API, then the asset graph and asset pages
opened in headless Chromium. Screenshots go to ``test-artifacts/ui/``.

The same runs are then repeated with ``dg.materialize`` (what ``make demo`` does) into another
data root: the shards must be byte-identical.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_project.assets.demo import demo_site
from dagster_project.assets.ingest import raw_documents, raw_files
from dagster_project.home import DAGSTER_YAML
from dagster_project.resources import DATA_ROOT_ENV, DataRoot

from .conftest import PROJECT_ROOT
from .system_deps import artifacts_dir, chromium, free_port, require

pytestmark = pytest.mark.slow

PARTITION = "demo/articles.jsonl"  # a landing file demo_site writes (with broken records)
START_TIMEOUT = 240.0
RUN_TIMEOUT = 300.0
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"]

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}"""
RUN_STATUS = "query Status($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
ADD_PARTITION = """
mutation Add($repo: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $name, partitionKey: $key) {
    __typename ... on PythonError { message } } }"""
LATEST_MATERIALIZATION = """
query Latest($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(limit: 1) { runId partition
    metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""


@dataclass
class Ui:
    url: str
    data_root: Path
    location: str
    log: Path

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    @property
    def repository(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": "__repository__"}

    def materialize(self, assets: list[str], partition: str | None = None) -> str:
        """Launch a run as the UI's Materialize button does; wait for it; return its id."""
        tags = [{"key": "dagster/partition", "value": partition}] if partition else []
        params = {"selector": {**self.repository, "jobName": "__ASSET_JOB",
                               "assetSelection": [{"path": [a]} for a in assets]},
                  "runConfigData": {}, "executionMetadata": {"tags": tags}}
        launched = self.gql(LAUNCH, params=params)["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            status = self.gql(RUN_STATUS, id=run_id)["runOrError"]["status"]
            if status in {"SUCCESS", "FAILURE", "CANCELED"}:
                assert status == "SUCCESS", f"run {run_id} of {assets}: {status}; see {self.log}"
                return run_id
            time.sleep(0.5)
        raise AssertionError(f"run {run_id} of {assets} still {status} after {RUN_TIMEOUT} s")


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C for the whole process group (what a terminal sends), then SIGKILL stragglers."""
    for sig, wait in ((signal.SIGINT, 60.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)  # anyone left in the group?
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _wait_until_loaded(ui: Ui, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dagster dev exited {proc.returncode}:\n"
                                 f"{ui.log.read_text()[-4000:]}")
        try:
            entries = ui.gql(LOCATIONS)["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            entries = []
        for entry in entries:
            if entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                assert loaded["__typename"] == "RepositoryLocation", loaded
                return entry["name"]
        time.sleep(0.5)
    raise AssertionError(f"the UI did not load its code location in {START_TIMEOUT} s")


@pytest.fixture(scope="module")
def ui() -> Iterator[Ui]:
    """``dagster dev`` in its own process group, on a temporary DAGSTER_HOME and data root."""
    root = Path(tempfile.mkdtemp(prefix="sievelm-ui-"))
    home, data = root / "home", root / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)  # telemetry off, as `make ui`'s home
    port = free_port()
    log = artifacts_dir("ui") / "dagster-dev.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), DATA_ROOT_ENV: str(data)}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-m", "dagster_project.definitions",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            # a background shell may have left SIGINT ignored; dagster dev stops on it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ui = Ui(f"http://127.0.0.1:{port}", data, "", log)
    try:
        ui.location = _wait_until_loaded(ui, proc)
        yield ui
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def launched(ui: Ui) -> dict[str, str]:
    """The demo site, then one of its landing files ingested: two runs launched over GraphQL."""
    assert ui.gql("mutation { setNuxSeen }")["setNuxSeen"] is True  # no first-visit pop-up
    runs = {"demo_site": ui.materialize(["demo_site"])}
    added = ui.gql(ADD_PARTITION, repo=ui.repository, name=raw_files.name, key=PARTITION)
    assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", added
    runs["raw_documents"] = ui.materialize(["raw_documents"], PARTITION)
    return runs


def test_runs_launched_over_graphql_record_metadata(ui: Ui, launched: dict[str, str]):
    asset = ui.gql(LATEST_MATERIALIZATION, key={"path": ["raw_documents"]})["assetOrError"]
    (mat,) = asset["assetMaterializations"]
    assert (mat["runId"], mat["partition"]) == (launched["raw_documents"], PARTITION)
    ints = {e["label"]: e["intValue"] for e in mat["metadataEntries"] if "intValue" in e}
    assert ints["rows_in"] == ints["rows_kept"] + ints["rows_rejected"]
    assert ints["rows_rejected"] > 0  # the demo dump carries broken records on purpose
    assert (ui.data_root / "web" / "ingest" / "part-demo__articles.jsonl.arrow").is_file()


def _playwright():
    require(importlib.util.find_spec("playwright"), "the playwright package is not installed")
    from playwright.sync_api import expect, sync_playwright

    return sync_playwright, expect


def test_asset_graph_and_asset_pages_in_chromium(ui: Ui, launched: dict[str, str], tmp_path):
    browser = chromium()
    sync_playwright, expect = _playwright()
    shots = artifacts_dir("ui")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=browser, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1600, "height": 1000})
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)

            def visit(path: str, shot: str, *texts: str) -> None:
                page.goto(f"{ui.url}{path}")
                for text in texts:
                    expect(page.get_by_text(text, exact=True).first).to_be_visible()
                page.screenshot(path=str(shots / f"{shot}.png"))

            # the whole graph: one box per group, then the web group's assets by name
            visit("/asset-groups", "01-global-lineage", "demo", "web", "tokens", "training",
                  "labelled")
            visit(f"/locations/{ui.location}/asset-groups/web", "02-web-group",
                  "raw_documents", "crawled_warcs", "dedup_signatures", "quality_signals",
                  "pii_redacted", "eval_ngram_index")
            # an asset's page: its metadata (counts, reasons) and the latest check results
            visit("/assets/raw_documents", "03-raw-documents", "raw_documents", "rows_in",
                  "rows_kept", "rows_rejected", "reject_reasons", "shard",
                  "Latest check results")
            expect(page.get_by_text("invalid_json").first).to_be_visible()
            visit("/assets/raw_documents?view=checks", "04-raw-documents-checks", "schema",
                  "rows_conserved", "This is a blocking asset check.")
            expect(page.get_by_text("Succeeded").first).to_be_visible()
            expect(page.get_by_text("Passed").first).to_be_visible()
            visit("/assets/demo_site", "05-demo-site", "demo_site", "pages", "pages_by_kind")
            visit(f"/runs/{launched['raw_documents']}", "06-run", "Success")
        finally:
            context.close()
    print(f"screenshots in {shots}")
    assert len(list(shots.glob("*.png"))) >= 6


def test_ui_and_demo_materializations_write_identical_shards(ui: Ui, launched, tmp_path):
    """The UI's code location and ``dg.materialize`` (as ``make demo``) are one Definitions."""
    from dagster_project.definitions import defs

    demo_root = tmp_path / "demo-data"
    resources = {"data": DataRoot(root=str(demo_root))}
    assets = [demo_site, raw_documents]
    assert {a.key for a in assets} <= set(defs.resolve_all_asset_keys())
    with dg.instance_for_test() as instance:
        assert dg.materialize(assets, selection=[demo_site], instance=instance,
                              resources=resources).success
        instance.add_dynamic_partitions(raw_files.name, [PARTITION])
        assert dg.materialize(assets, selection=[raw_documents], partition_key=PARTITION,
                              instance=instance, resources=resources).success

    stage = Path("web") / "ingest"
    ui_files = sorted(p.relative_to(ui.data_root / stage)
                      for p in (ui.data_root / stage).rglob("*.arrow"))
    demo_files = sorted(p.relative_to(demo_root / stage)
                        for p in (demo_root / stage).rglob("*.arrow"))
    assert ui_files == demo_files
    assert any(p.parts[0] == "rejected" for p in ui_files)
    for rel in ui_files:
        ui_bytes = (ui.data_root / stage / rel).read_bytes()
        assert ui_bytes == (demo_root / stage / rel).read_bytes(), rel
