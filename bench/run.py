"""``make bench``: run every benchmark, print the table, optionally refresh the README's."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import re
from pathlib import Path
from types import ModuleType

from bench.harness import TABLE_HEADER, Comparison, machine

README = Path(__file__).resolve().parent.parent / "README.md"
BENCHMARKS = {"ingest": "bench_ingest", "extract": "bench_extract", "crawl": "bench_crawl",
              "dedup": "bench_dedup", "tokenize": "bench_tokenize",
              "quality_filters": "bench_quality_filters", "train": "bench_train",
              "ray": "bench_ray"}
"""Benchmark name -> module in ``bench``, imported when it runs: worker processes of the
stages re-import this ``__main__`` module, so it must stay cheap to import."""


START, END = "<!-- bench:start -->", "<!-- bench:end -->"
QUALITY = ("<!-- quality:start -->", "<!-- quality:end -->")
DEDUP_QUALITY = ("<!-- dedup-quality:start -->", "<!-- dedup-quality:end -->")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


def render(results: list[Comparison]) -> str:
    rows = "\n".join(r.row() for r in results)
    stamp = dt.date.today().isoformat()
    return (f"{TABLE_HEADER}\n{rows}\n\nMedians of {results[0].repeats} alternating runs on "
            f"{machine()}, {stamp}. Speed-up = baseline time / our time (>1: ours is faster).")


def update_readme(table: str, markers: tuple[str, str] = (START, END)) -> None:
    start, end = markers
    text = README.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the {start} ... {end} markers")
    new = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{table}\n{end}",
                 text, flags=re.S)
    README.write_text(new)


def _dedup_quality() -> str:
    pairs = _module("dedup_pairs")
    return pairs.evaluate(pairs.make_pairs(2000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply the work size.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--no-quality", action="store_true",
                        help="Skip the extraction- and dedup-quality evaluations (about a "
                        "minute each).")
    args = parser.parse_args()
    results: list[Comparison] = []
    for name in args.only or sorted(BENCHMARKS):
        print(f"running {name} ...", flush=True)
        results.extend(_module(BENCHMARKS[name]).run(scale=args.scale, repeats=args.repeats))
    table = render(results)
    print(table)
    quality = None if args.no_quality or args.only else _module("bench_quality").run()
    if quality:
        print(quality)
    dedup_quality = (None if args.no_quality or (args.only and "dedup" not in args.only)
                     else _dedup_quality())
    if dedup_quality:
        print(dedup_quality)
    if args.update_readme:
        update_readme(table)
        if quality:
            update_readme(quality, QUALITY)
        if dedup_quality:
            update_readme(dedup_quality, DEDUP_QUALITY)
        print(f"updated {README}")


if __name__ == "__main__":
    main()
