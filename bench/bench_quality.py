"""Extraction quality on the shared WCXB pages: ours vs plain ``trafilatura.extract``."""

from __future__ import annotations

import functools
from pathlib import Path

WCXB = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "extraction-wcxb-dev"


def run(workers: int = 2) -> str | None:
    """A markdown table (per page type, both extractors), or None without the shared data."""
    from curate.eval_extraction import evaluate, load_pages, trafilatura_baseline
    from curate.extract import ExtractConfig, extract_text

    if not (WCXB / "html").is_dir():
        print(f"extraction quality skipped: {WCXB} not found")
        return None
    pages = load_pages(WCXB / "html", WCXB / "gold")
    ours = evaluate(pages, functools.partial(extract_text, cfg=ExtractConfig()), workers)
    base = evaluate(pages, trafilatura_baseline, workers)
    ours_rows, base_rows = ours.summary(), base.summary()
    lines = ["| page type | pages | F1 ours | F1 trafilatura.extract | with ours | with base | "
             "without ours | without base |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, row in ours_rows.items():
        b = base_rows[kind]
        lines.append(f"| {kind} | {row['pages']} | {row['f1']:.3f} | {b['f1']:.3f} | "
                     f"{row['with_rate']:.3f} | {b['with_rate']:.3f} | "
                     f"{row['without_rate']:.3f} | {b['without_rate']:.3f} |")
    return "\n".join(lines) + (f"\n\n{len(pages)} WCXB dev pages (`../shared/data`), "
                               "`curate eval extraction`, preset standard.")
