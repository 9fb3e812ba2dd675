"""The demo website and its raw dumps, generated deterministically into the data root."""


import shutil

import dagster as dg

from curate.demo_site import write_site
from dagster_project.resources import DataRoot


class DemoSiteConfig(dg.Config):
    seed: int = 0
    n_articles: int = 40
    base_url: str = "http://127.0.0.1:8642"
    """Where the site will be served for crawling (written into sitemap.xml)."""


@dg.asset(group_name="demo", kinds={"html"},
          description="A small synthetic website (articles, boilerplate, near-duplicates, spam, "
                      "several languages, robots.txt, sitemap) plus raw JSONL/CSV dumps of it, "
                      "copied into the landing folder for ingest.")
def demo_site(context: dg.AssetExecutionContext, config: DemoSiteConfig,
              data: DataRoot) -> dg.MaterializeResult:
    out = data.path / "demo"
    summary = write_site(out, seed=config.seed, n_articles=config.n_articles,
                         base_url=config.base_url)
    landing = data.landing_dir / "demo"
    landing.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sorted((out / "raw").iterdir()):
        if src.suffix in {".jsonl", ".csv"}:
            shutil.copyfile(src, landing / src.name)
            copied.append(f"demo/{src.name}")
    context.log.info(f"site in {out / 'site'}; dumps landed as {copied}")
    counts = "\n".join(f"| {k} | {v} |" for k, v in sorted(summary.counts.items()))
    return dg.MaterializeResult(metadata={
        "pages": len(summary.pages),
        "site": dg.MetadataValue.path(str(out / "site")),
        "landed": dg.MetadataValue.json(copied),
        "pages_by_kind": dg.MetadataValue.md(f"| kind | pages |\n|---|---:|\n{counts}"),
    })
