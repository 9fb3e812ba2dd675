"""Score a main-text extractor on WCXB pages (the Web Content eXtraction Benchmark).

Per page, as the benchmark defines it: bag-of-words precision, recall and F1 of the extracted
text against the gold ``main_content`` (words are ``\\w+`` on lowercased text; counts are
clipped, i.e. the overlap is a multiset intersection), macro-averaged over pages. An empty
gold text scores 1 against an empty extraction and 0 otherwise; an empty extraction scores 0.

Two snippet rates back the F1 up: ``with`` (the fraction of must-have snippets found in the
extraction, higher is better) and ``without`` (the fraction of boilerplate snippets found,
lower is better). Matching is a substring test after casefolding and collapsing every run of
whitespace to one space on both sides, so line breaks an extractor puts between blocks do not
hide a snippet, while words, punctuation and order must still match. A page with no snippets
of a kind has no rate for it (None) and is left out of that average, rather than counting an
empty boilerplate list as full leakage.

Extraction is per page by nature, so ``evaluate`` runs it in a process pool when asked; the
aggregation over pages is done with polars.
"""

from __future__ import annotations

import functools
import gzip
import json
import multiprocessing
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

Extractor = Callable[[bytes, str], str]
"""(html bytes, url) -> main text, "" when nothing could be extracted."""

WCXB_DEV_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "extraction-wcxb-dev"
"""The shared dev split (``../shared/data`` from the project root), when this machine has it."""

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
OVERALL = "overall"
METRICS = ("f1", "precision", "recall", "with_rate", "without_rate", "seconds")


@dataclass(frozen=True)
class Page:
    """One benchmark page: the HTML as fetched and its gold annotation."""

    id: str
    url: str
    page_type: str
    title: str
    html: bytes
    main_content: str
    with_snippets: tuple[str, ...] = ()
    without_snippets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PageScore:
    """How one extraction scored; ``seconds`` is the extractor's own time on the page."""

    id: str
    page_type: str
    precision: float
    recall: float
    f1: float
    with_rate: float | None
    without_rate: float | None
    seconds: float = 0.0
    extracted_chars: int = 0
    error: str | None = None


def words(text: str) -> Counter[str]:
    """The bag of words the metric compares: ``\\w+`` runs of the lowercased text."""
    return Counter(_WORD.findall(text.lower()))


def word_prf(extracted: str, gold: str) -> tuple[float, float, float]:
    """(precision, recall, F1) of the extraction's words against the gold words, clipped."""
    got, want = words(extracted), words(gold)
    n_got, n_want = got.total(), want.total()
    if n_want == 0:
        return (1.0, 1.0, 1.0) if n_got == 0 else (0.0, 0.0, 0.0)
    overlap = (got & want).total()
    if overlap == 0:
        return 0.0, 0.0, 0.0
    precision, recall = overlap / n_got, overlap / n_want
    return precision, recall, 2 * precision * recall / (precision + recall)


def normalise(text: str) -> str:
    """The form snippets are matched in: casefolded, whitespace runs as one space."""
    return _SPACE.sub(" ", text).strip().casefold()


def snippet_rate(text: str, snippets: Sequence[str], normalised: bool = False) -> float | None:
    """Fraction of ``snippets`` found in ``text`` (None when there are none to look for)."""
    wanted = [s for s in (normalise(s) for s in snippets) if s]
    if not wanted:
        return None
    haystack = text if normalised else normalise(text)
    return sum(s in haystack for s in wanted) / len(wanted)


def score_page(extracted: str, page: Page, seconds: float = 0.0,
               error: str | None = None) -> PageScore:
    """Score one extraction against the page's gold text and snippets."""
    precision, recall, f1 = word_prf(extracted, page.main_content)
    haystack = normalise(extracted)
    return PageScore(
        id=page.id, page_type=page.page_type, precision=precision, recall=recall, f1=f1,
        with_rate=snippet_rate(haystack, page.with_snippets, normalised=True),
        without_rate=snippet_rate(haystack, page.without_snippets, normalised=True),
        seconds=seconds, extracted_chars=len(extracted), error=error)


def _html_file(html_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.html.gz", f"{stem}.html"):
        if (html_dir / name).is_file():
            return html_dir / name
    raise FileNotFoundError(f"no {stem}.html.gz (or .html) in {html_dir} for gold/{stem}.json")


def _read_page(gold_path: Path, html_dir: Path) -> Page:
    gold = json.loads(gold_path.read_text(encoding="utf-8"))
    html_path = _html_file(html_dir, gold_path.stem)
    raw = html_path.read_bytes()
    return Page(
        id=str(gold.get("id") or gold_path.stem), url=gold.get("url") or "",
        page_type=gold.get("page_type") or "unknown", title=gold.get("title") or "",
        html=gzip.decompress(raw) if html_path.suffix == ".gz" else raw,
        main_content=gold.get("main_content") or "",
        with_snippets=tuple(gold.get("with") or ()),
        without_snippets=tuple(gold.get("without") or ()))


def load_pages(html_dir: Path, gold_dir: Path, limit: int | None = None) -> list[Page]:
    """Pages in id order: ``gold/NNNN.json`` with ``html/NNNN.html.gz`` (the first ``limit``)."""
    html_dir, gold_dir = Path(html_dir), Path(gold_dir)
    for folder in (html_dir, gold_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"benchmark folder not found: {folder}")
    golds = sorted(gold_dir.glob("*.json"))[:limit]
    return [_read_page(p, html_dir) for p in golds]


def _extract_and_score(extractor: Extractor, page: Page) -> PageScore:
    """Worker body: a failing extractor scores the page as an empty extraction."""
    t0 = time.perf_counter()
    try:
        text, error = extractor(page.html, page.url) or "", None
    except Exception as exc:  # one bad page must not end the run
        text, error = "", f"{type(exc).__name__}: {exc}"
    return score_page(text, page, time.perf_counter() - t0, error)


@dataclass
class EvalReport:
    """Per-page scores and their macro averages per page type and overall."""

    scores: list[PageScore]
    workers: int = 1
    wall_seconds: float = 0.0

    def frame(self) -> pl.DataFrame:
        schema = {"id": pl.String, "page_type": pl.String, "precision": pl.Float64,
                  "recall": pl.Float64, "f1": pl.Float64, "with_rate": pl.Float64,
                  "without_rate": pl.Float64, "seconds": pl.Float64,
                  "extracted_chars": pl.Int64, "error": pl.String}
        return pl.DataFrame([asdict(s) for s in self.scores], schema=schema, orient="row")

    def summary(self) -> dict[str, dict[str, Any]]:
        """{page type or "overall": {pages, errors, f1, precision, recall, with_rate, ...}}."""
        aggs = [pl.len().alias("pages"), pl.col("error").is_not_null().sum().alias("errors"),
                *(pl.col(m).mean() for m in METRICS)]
        frame = self.frame()
        per_type = frame.group_by("page_type").agg(aggs).sort("page_type")
        overall = frame.select(pl.lit(OVERALL).alias("page_type"), *aggs)
        rows = pl.concat([per_type, overall], how="vertical_relaxed").to_dicts()
        return {r.pop("page_type"): r for r in rows}

    @property
    def f1(self) -> float:
        return self.summary()[OVERALL]["f1"] or 0.0

    def table(self) -> str:
        """A markdown table: one row per page type, then the overall macro average."""
        lines = ["| page type | pages | F1 | precision | recall | with | without | s/page |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, row in self.summary().items():
            label = f"**{name}**" if name == OVERALL else name
            cells = " | ".join("-" if row[m] is None else f"{row[m]:.3f}" for m in METRICS)
            lines.append(f"| {label} | {row['pages']} | {cells} |")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"pages": len(self.scores), "workers": self.workers,
                "wall_seconds": round(self.wall_seconds, 3), "summary": self.summary(),
                "scores": [asdict(s) for s in self.scores]}


def evaluate(pages: Sequence[Page], extractor: Extractor, workers: int = 1) -> EvalReport:
    """Run ``extractor`` on every page and score it; with ``workers > 1`` in a process pool,
    where the extractor must pickle (a module-level function or a ``functools.partial``)."""
    run = functools.partial(_extract_and_score, extractor)
    t0 = time.perf_counter()
    if workers <= 1 or len(pages) <= 1:
        scores = [run(p) for p in pages]
    else:
        ctx = multiprocessing.get_context("forkserver")
        n = min(workers, len(pages))
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            scores = list(pool.map(run, pages, chunksize=max(1, len(pages) // (n * 8))))
    return EvalReport(scores, workers=workers, wall_seconds=time.perf_counter() - t0)


def trafilatura_baseline(html: bytes, url: str) -> str:
    """What a user would write: decode as UTF-8, ``trafilatura.extract`` with its defaults."""
    import trafilatura

    return trafilatura.extract(html.decode("utf-8", errors="replace"), url=url) or ""
