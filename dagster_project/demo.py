"""``make demo``: materialize the whole asset graph through the UI's ``Definitions``.

Runs are recorded in the project's ``DAGSTER_HOME``, so ``make ui`` shows them afterwards.
"""

from __future__ import annotations

import time

import dagster as dg

from dagster_project.home import ensure_dagster_home


def materialize_all(instance: dg.DagsterInstance) -> list[dg.ExecuteInJobResult]:
    """Demo site first, then one run per landing-folder partition of every shard asset."""
    from dagster_project.assets.demo import demo_site
    from dagster_project.assets.ingest import landing_files, raw_documents, raw_files
    from dagster_project.definitions import defs

    assets = [demo_site, raw_documents]
    resources = {"data": defs.resources["data"]}
    results = [dg.materialize(assets, selection=[demo_site], instance=instance,
                              resources=resources, tags={"launched_by": "make demo"})]
    keys = landing_files(resources["data"].landing_dir)
    known = set(instance.get_dynamic_partitions(raw_files.name))
    instance.add_dynamic_partitions(raw_files.name, [k for k in keys if k not in known])
    for key in keys:
        results.append(dg.materialize(assets, selection=[raw_documents], partition_key=key,
                                      instance=instance, resources=resources,
                                      tags={"launched_by": "make demo"}))
    return results


def summarize() -> str:
    """What the demo produced, read back from the manifests and verified."""
    from dagster_project.definitions import defs
    from schemas import read_manifest
    from schemas.verify import find_stage_dirs, verify_stage

    data = defs.resources["data"]
    lines = ["", "demo outputs:"]
    for stage_dir in find_stage_dirs(data.path):
        manifest = read_manifest(stage_dir)
        report = verify_stage(stage_dir)
        t = manifest.totals()
        lines.append(f"  {stage_dir.relative_to(data.path)}/  {manifest.kind}: {t['shards']} "
                     f"shards, rows in {t['rows_in']}, kept {t['rows_kept']}, rejected "
                     f"{t['rows_rejected']}; verify {'OK' if report.ok else report.findings}")
    return "\n".join(lines)


def main() -> None:
    home = ensure_dagster_home()
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        results = materialize_all(instance)
        failed = [r for r in results if not r.success]
        checks = [(e.asset_check_evaluation_data.asset_check_key.name,
                   e.asset_check_evaluation_data.passed)
                  for r in results for e in r.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        print(summarize())
    passed = sum(ok for _, ok in checks)
    print(f"  asset checks: {passed}/{len(checks)} passed")
    print(f"  {len(results)} runs in {time.perf_counter() - t0:.1f} s, recorded in {home}")
    print("  browse them with `make ui` (http://127.0.0.1:3000)")
    if failed or passed != len(checks):
        raise SystemExit("demo failed: see the run logs above")


if __name__ == "__main__":
    main()
