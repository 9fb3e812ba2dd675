"""Heuristic quality filtering: ours (signals + select, fineweb preset) vs datatrove's filters.

The baseline is what FineWeb runs: datatrove's ``GopherRepetitionFilter``,
``GopherQualityFilter``, ``C4QualityFilter(filter_no_terminal_punct=False)`` and
``FineWebQualityFilter`` in that order on datatrove ``Document`` objects, one process (English
word tokenizer, i.e. spaCy's). Both sides get the same documents in memory:

- real web text: the human-checked main text of the WCXB pages in ``../shared/data`` (when
  present), their first paragraphs (short documents near the word-count thresholds), and the
  whole visible text of the same HTML pages (menus, footers, cookie banners included);
- the demo site's pages (articles, foreign-language pages, near duplicates, spam, thin pages)
  for several seeds;
- synthetic boilerplate and spam: navigation menus, link lists, lorem ipsum, code with braces,
  hashtag and ellipsis teasers, repeated lines, number tables, each alone and mixed into prose.

The ``work`` column reports the keep/drop agreement between the two.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
from pathlib import Path

import pyarrow as pa

from bench.harness import Comparison, compare
from curate.quality.words import split_chunk

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "extraction-wcxb-dev"

MENU = ("Home", "About us", "Products", "Services", "Blog", "Contact", "Careers", "Login",
        "Sign up", "Pricing", "FAQ", "Support", "Terms of Use", "Privacy Policy", "Sitemap")
PROSE = (
    "The committee met on Tuesday to review the budget for the coming year.",
    "Most of the discussion concerned the cost of repairing the old bridge.",
    "Residents had complained for months about the noise from the quarry.",
    "She said the new schedule would make it easier for parents to plan their week.",
    "It's not clear whether the council will approve the plan before the summer.",
    "According to the report, rainfall in the region fell by a third last year.",
    "The museum reopened after a long renovation that restored its glass roof.",
    "Volunteers planted more than two hundred trees along the river bank.",
    "He didn't expect the well-known author to answer his letter, but she did.",
    "Prices at the market have risen, and some stallholders are worried.",
    "The library now lends tools as well as books, which has proved popular.",
    "Engineers tested the pumps (three of them) before the flood season began.",
)
SPAM = ("BUY NOW!!!", "Click here for the best deals", "Limited offer... act fast...",
        "#sale #deal #cheap #discount #free", "Subscribe to our newsletter",
        "This website uses cookies to improve your experience.", "Read more...",
        "Share on Facebook", "Tweet this", "Lorem ipsum dolor sit amet, consectetur adipiscing.",
        "Please enable JavaScript to view this page.", "function init() { return 0; }",
        "Copyright 2024. All rights reserved.", "Page 1 2 3 4 5 Next »")


def _shared_texts() -> list[str]:
    if not (SHARED / "gold").is_dir():
        print(f"quality filters bench: {SHARED} not found, using generated documents only")
        return []
    texts = []
    for path in sorted((SHARED / "gold").glob("*.json")):
        text = json.loads(path.read_text())["main_content"]
        texts.append(text)
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        for k in (1, 2, 3, 5):
            if len(paragraphs) > k:
                texts.append("\n\n".join(paragraphs[:k]))
    return texts


def _page_texts() -> list[str]:
    """All visible text of the shared HTML pages, one line per block element."""
    if not (SHARED / "html").is_dir():
        return []
    import lxml.html

    blocks = {"p", "div", "li", "h1", "h2", "h3", "h4", "td", "th", "a", "span", "section",
              "article", "header", "footer", "nav", "button", "label", "option", "dt", "dd"}
    texts = []
    for path in sorted((SHARED / "html").glob("*.html.gz")):
        try:
            root = lxml.html.fromstring(gzip.decompress(path.read_bytes()))
        except (ValueError, lxml.etree.ParserError):
            continue
        for bad in root.xpath("//script|//style|//noscript|//svg"):
            bad.drop_tree()
        lines = []
        for el in root.iter():
            if isinstance(el.tag, str) and el.tag in blocks and el.text and el.text.strip():
                lines.append(" ".join(el.text.split()))
            if el.tail and el.tail.strip():
                lines.append(" ".join(el.tail.split()))
        texts.append("\n".join(lines))
    return texts


def _demo_texts(seeds: int) -> list[str]:
    from curate.demo_site import build_site

    return [p.text for seed in range(seeds) for p in build_site(seed, n_articles=60)]


def _synthetic(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        kind = i % 8
        prose = [" ".join(rng.sample(PROSE, rng.randint(2, 5))) for _ in range(rng.randint(1, 6))]
        junk = [rng.choice(SPAM) for _ in range(rng.randint(1, 12))]
        if kind == 0:
            lines = rng.sample(MENU, rng.randint(4, 12)) + prose
        elif kind == 1:
            lines = prose + junk
        elif kind == 2:
            lines = [f"- {rng.choice(PROSE)}" for _ in range(rng.randint(3, 20))]
        elif kind == 3:
            lines = [f"{rng.randint(1, 999)} | {rng.random():.3f} | {rng.choice(MENU)}"
                     for _ in range(rng.randint(5, 40))]
        elif kind == 4:
            lines = prose * rng.randint(1, 3)
        elif kind == 5:
            lines = [rng.choice(PROSE).replace(".", "...") for _ in range(rng.randint(2, 10))]
        elif kind == 6:
            lines = rng.sample(MENU, 3) + prose + rng.sample(MENU, 5) + junk
        else:
            lines = prose
        rng.shuffle(lines) if kind in (1, 6) else None
        docs.append(("\n\n" if rng.random() < 0.5 else "\n").join(lines))
    return docs


def make_documents(scale: float = 1.0) -> list[str]:
    """The benchmark's documents (deterministic); about 4,000 at scale 1 with the shared data."""
    docs = _shared_texts() + _page_texts() + _demo_texts(4) + _synthetic(800)
    if scale < 1:
        docs = docs[::max(1, round(1 / scale))]
    elif scale > 1:
        docs = docs * round(scale)
    return docs


def datatrove_filters():
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return [GopherRepetitionFilter(), GopherQualityFilter(),
            C4QualityFilter(filter_no_terminal_punct=False), FineWebQualityFilter()]


def datatrove_keep(texts: list[str], filters=None) -> list[bool]:
    """datatrove's decision per text: True when every filter keeps it."""
    from datatrove.data import Document

    filters = filters or datatrove_filters()
    out = []
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        keep = True
        for f in filters:
            verdict = f.filter(doc)
            if verdict is False or (isinstance(verdict, tuple) and not verdict[0]):
                keep = False
                break
        out.append(keep)
    return out


def ours_keep(table: pa.Table) -> list[bool]:
    from curate.quality.rules import PRESETS
    from curate.quality.select import failures
    from curate.quality.signals import add_signals

    fail = failures(add_signals(table), list(PRESETS["fineweb"]))
    return (~fail.any(axis=1)).tolist()


def run(scale: float = 1.0, repeats: int = 3) -> list[Comparison]:
    """One comparison; ``work`` reports the keep/drop agreement of the timed runs."""
    docs = make_documents(scale)
    table = pa.table({"id": [str(i) for i in range(len(docs))], "text": docs})
    filters = datatrove_filters()
    ours_keep(table.slice(0, 50))  # load the compiled kernels, as a worker's first shard would
    decisions: dict[str, list[bool]] = {}

    def ours() -> None:
        split_chunk.cache_clear()  # no head start from the previous run's word cache
        decisions["ours"] = ours_keep(table)

    def theirs() -> None:
        decisions["theirs"] = datatrove_keep(docs, filters)

    result = compare("quality filters", "", ("curate quality signals + select (1 process)", ours),
                     ("datatrove Gopher+C4+FineWeb filters (1 process)", theirs), repeats)
    a, b = decisions["ours"], decisions["theirs"]
    same = sum(x == y for x, y in zip(a, b, strict=True))
    work = (f"{len(docs):,} web-like docs, FineWeb rules; same keep/drop on "
            f"{100 * same / len(docs):.2f}% (kept: ours {sum(a):,}, datatrove {sum(b):,})")
    return [dataclasses.replace(result, work=work)]
