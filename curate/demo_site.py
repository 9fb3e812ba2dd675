"""A deterministic synthetic website plus raw "dump" files, for the demo and the tests.

The site exercises every curation stage on known ground truth: boilerplate around the main
text (extraction), several languages and a non-UTF-8 encoding (language ID, decoding), near-
and exact duplicates (dedup), spam and thin pages (quality filters), robots.txt and a sitemap
(crawling), and JSONL/CSV exports with deliberately broken records at known places (ingest).

Everything is a pure function of ``seed`` and ``n_articles``: no clock, no ``hash()``, no
set-order iteration, so the same arguments always give a byte-identical tree.
"""

from __future__ import annotations

import csv
import html
import io
import json
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

from curate.demo_text import (
    ABOUT_TEXT,
    ADDED_LINES,
    ARCHIVE_INTRO,
    AUTHORS,
    COMING_SOON_TEXT,
    EN_SLOTS,
    EN_TOPICS,
    FOREIGN_SLOTS,
    FOREIGN_TOPICS,
    HOME_INTRO,
    INTERNATIONAL_INTRO,
    PRIVATE_TEXT,
    REPLACEMENT_SENTENCES,
    SITE_NAME,
    SPAM_ADJECTIVES,
    SPAM_PRODUCTS,
    TopicText,
    parse_clusters,
)

__all__ = [
    "CP1252",
    "DEFAULT_BASE_URL",
    "DISALLOWED_PREFIX",
    "KINDS",
    "SitePage",
    "SiteSummary",
    "build_site",
    "jaccard",
    "page_file",
    "render_page",
    "word_ngrams",
    "write_site",
]

KINDS = ("article", "near_duplicate", "spam", "foreign", "index", "disallowed", "thin")
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DISALLOWED_PREFIX = "/private/"
CP1252 = "windows-1252"
CRAWL_DELAY = "0.05"
DUMP_KINDS = ("article", "near_duplicate", "foreign", "spam")
CSV_HEADER = ("id", "url", "title", "text", "lang_hint")

# Broken records injected into the dumps: (1-based position, reason). Reasons use the same
# names as curate.ingest's rejection reasons. JSONL positions are physical lines; CSV
# positions are data rows as csv.reader yields them after the header (header excluded).
JSONL_BROKEN: tuple[tuple[int, str], ...] = (
    (3, "invalid_json"), (7, "not_an_object"), (12, "invalid_encoding"), (18, "missing_text"),
    (25, "empty_text"), (31, "text_not_string"), (36, "blank_line"),
)
CSV_BROKEN: tuple[tuple[int, str], ...] = ((4, "wrong_column_count"), (9, "invalid_encoding"))
BROKEN_DETAILS = {
    "invalid_json": "a JSON object cut off half way through (truncated line)",
    "not_an_object": "a JSON array instead of an object",
    "invalid_encoding": "Latin-1 bytes that are not valid UTF-8 inside the text",
    "missing_text": "a JSON object without a 'text' field",
    "empty_text": "a 'text' field holding only whitespace",
    "text_not_string": "a 'text' field holding a number",
    "blank_line": "an empty line",
    "wrong_column_count": "a row whose text was split on commas into extra columns",
}
_MOJIBAKE_TEXT = "Le café du coin ouvre à sept heures et ferme tard le soir."

_NEAR_DUP_MIN_JACCARD = 0.75
_DISTINCT_MAX_JACCARD = 0.4
_DISTINCT_TRIES = 30
_EDITS = ("changed_sentence", "reordered_paragraphs", "added_line", "changed_and_added")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")

Paragraphs = tuple[tuple[str, ...], ...]


# --- public data types -------------------------------------------------------------------------


@dataclass(frozen=True)
class SitePage:
    """One page of the demo site together with its ground truth (what a stage should find)."""

    path: str
    kind: str
    lang: str
    title: str
    text: str
    """The main content, paragraphs joined by a blank line: what a good extractor returns."""
    duplicate_of: str | None = None
    author: str = ""
    date: str = ""
    encoding: str = "utf-8"
    """Charset the HTML file is written in and declares in ``<meta charset>``."""
    links: tuple[tuple[str, str], ...] = ()
    """(label, href) of links inside the main content (index and spam pages)."""

    @property
    def allowed(self) -> bool:
        """False for pages robots.txt forbids, which a polite crawler must skip."""
        return not self.path.startswith(DISALLOWED_PREFIX)

    @property
    def file(self) -> str:
        """File path relative to the site root."""
        return page_file(self.path)


@dataclass(frozen=True)
class SiteSummary:
    """What :func:`write_site` produced; ``to_json`` is the manifest tests compare against."""

    root: Path
    pages: tuple[SitePage, ...]
    counts: dict[str, int]
    seed: int = 0
    base_url: str = DEFAULT_BASE_URL

    def to_json(self) -> dict:
        """Manifest dict. ``root`` is left out so that trees in two places stay identical."""
        by_path = {p.path: p for p in self.pages}
        return {
            "site_name": SITE_NAME,
            "seed": self.seed,
            "base_url": self.base_url,
            "counts": dict(self.counts),
            "pages": [_page_json(p, by_path, self.base_url) for p in self.pages],
        }


def _page_json(page: SitePage, by_path: dict[str, SitePage], base_url: str) -> dict:
    original = by_path.get(page.duplicate_of) if page.duplicate_of else None
    return {
        "path": page.path,
        "url": base_url + page.path,
        "file": page.file,
        "kind": page.kind,
        "lang": page.lang,
        "title": page.title,
        "text": page.text,
        "duplicate_of": page.duplicate_of,
        "exact_duplicate": original is not None and original.text == page.text,
        "allowed": page.allowed,
        "encoding": page.encoding,
        "author": page.author,
        "date": page.date,
        "links": [{"label": label, "href": href} for label, href in page.links],
    }


# --- small helpers -----------------------------------------------------------------------------


def page_file(path: str) -> str:
    """Map a URL path to the file a static server would serve for it ("/" -> index.html)."""
    rel = path.lstrip("/")
    return rel + "index.html" if rel == "" or rel.endswith("/") else rel


def word_ngrams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams, the shingles near-duplicate detection compares."""
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(max(len(words) - n + 1, 0))}


def jaccard(a: set, b: set) -> float:
    """Jaccard similarity of two shingle sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _rng(seed: int, part: str) -> random.Random:
    """An independent stream per part, so more articles do not reshuffle the foreign pages."""
    return random.Random(f"curate.demo_site:{seed}:{part}")


def _join(paragraphs: Paragraphs) -> str:
    return "\n\n".join(" ".join(p) for p in paragraphs)


def _slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")


def _date(rng: random.Random) -> str:
    return f"{rng.choice((2022, 2023, 2024))}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _slots(rng: random.Random, lang: str) -> dict[str, str]:
    """Per-article values for the ``{slot}`` placeholders in the corpus."""
    names = EN_SLOTS if lang == "en" else {**EN_SLOTS, **FOREIGN_SLOTS[lang]}
    slots = {key: rng.choice(values) for key, values in names.items()}
    slots.update(month=rng.choice(_MONTHS), year=str(rng.randint(1850, 1899)),
                 recent_year=str(rng.randint(1985, 2015)), count=str(rng.randint(3, 12)),
                 old_year=str(rng.randint(1150, 1600)))
    return slots


def _titled(titles: Sequence[str], k: int) -> str:
    """The k-th title of a shuffled list, with a part number once the list runs out."""
    title = titles[k % len(titles)]
    return title if k < len(titles) else f"{title} (Part {k // len(titles) + 1})"


# --- composing prose ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Draft:
    """A generated article before it becomes a page: kept so near-duplicates can edit it."""

    page: SitePage
    topic: TopicText
    slots: dict[str, str] = field(compare=False)
    paragraphs: Paragraphs


def _compose(rng: random.Random, topic: TopicText, slots: dict[str, str], max_paragraphs: int,
             max_sentences: int) -> Paragraphs:
    """3..max_paragraphs paragraphs, each 3..max_sentences sentences of one cluster in order."""
    clusters = topic.clusters
    n_par = rng.randint(3, min(max_paragraphs, len(clusters)))
    paragraphs = []
    for c in rng.sample(range(len(clusters)), n_par):
        cluster = clusters[c]
        k = rng.randint(3, min(max_sentences, len(cluster)))
        picked = sorted(rng.sample(range(len(cluster)), k))
        paragraphs.append(tuple(cluster[i].format(**slots) for i in picked))
    return tuple(paragraphs)


def _compose_distinct(rng: random.Random, topic: TopicText, others: list[set],
                      max_paragraphs: int, max_sentences: int,
                      ) -> tuple[dict[str, str], Paragraphs, set]:
    """Compose until the text is far from every earlier one, so only planted dups are dups."""
    best: tuple[float, dict[str, str], Paragraphs, set] | None = None
    for _ in range(_DISTINCT_TRIES):
        slots = _slots(rng, topic.lang)
        paragraphs = _compose(rng, topic, slots, max_paragraphs, max_sentences)
        shingles = word_ngrams(_join(paragraphs))
        worst = max((jaccard(shingles, o) for o in others), default=0.0)
        if best is None or worst < best[0]:
            best = (worst, slots, paragraphs, shingles)
        if worst < _DISTINCT_MAX_JACCARD:
            break
    assert best is not None
    return best[1], best[2], best[3]


def _make_articles(seed: int, n: int) -> list[_Draft]:
    """English articles, topics in rotation, paths like /articles/river-ecology-03.html."""
    rng = _rng(seed, "articles")
    titles = {t.slug: rng.sample(t.titles, len(t.titles)) for t in EN_TOPICS}
    shingles: dict[str, list[set]] = {t.slug: [] for t in EN_TOPICS}
    drafts = []
    for i in range(n):
        topic, k = EN_TOPICS[i % len(EN_TOPICS)], i // len(EN_TOPICS)
        slots, paragraphs, sh = _compose_distinct(rng, topic, shingles[topic.slug], 7, 6)
        shingles[topic.slug].append(sh)
        page = SitePage(f"/articles/{topic.slug}-{k + 1:02d}.html", "article", "en",
                        _titled(titles[topic.slug], k), _join(paragraphs),
                        author=rng.choice(AUTHORS["en"]), date=_date(rng))
        drafts.append(_Draft(page, topic, slots, paragraphs))
    return drafts


def _make_foreign(seed: int, n: int) -> list[SitePage]:
    """French, German and Spanish articles; the first French and German ones in cp1252."""
    rng = _rng(seed, "foreign")
    titles = {t.lang: rng.sample(t.titles, len(t.titles)) for t in FOREIGN_TOPICS}
    shingles: dict[str, list[set]] = {t.lang: [] for t in FOREIGN_TOPICS}
    pages = []
    for i in range(n):
        topic, k = FOREIGN_TOPICS[i % len(FOREIGN_TOPICS)], i // len(FOREIGN_TOPICS)
        _, paragraphs, sh = _compose_distinct(rng, topic, shingles[topic.lang], 5, 5)
        shingles[topic.lang].append(sh)
        title = _titled(titles[topic.lang], k)
        encoding = CP1252 if k == 0 and topic.lang in ("fr", "de") else "utf-8"
        pages.append(SitePage(f"/international/{topic.lang}/{_slugify(title)}.html", "foreign",
                              topic.lang, title, _join(paragraphs),
                              author=rng.choice(AUTHORS[topic.lang]), date=_date(rng),
                              encoding=encoding))
    return pages


# --- near-duplicates ---------------------------------------------------------------------------


def _edit(rng: random.Random, draft: _Draft, edit: str) -> Paragraphs:
    """Apply one small edit of the kind that makes real-world near-duplicates."""
    paras = [list(p) for p in draft.paragraphs]
    if edit in ("changed_sentence", "changed_and_added"):
        p = rng.randrange(len(paras))
        s = rng.randrange(len(paras[p]))
        used = {sentence for para in paras for sentence in para}
        unused = [x.format(**draft.slots) for c in draft.topic.clusters for x in c]
        unused = [x for x in unused if x not in used] or list(REPLACEMENT_SENTENCES)
        paras[p][s] = rng.choice(unused)
    if edit == "reordered_paragraphs":
        p = rng.randrange(len(paras) - 1)
        paras[p], paras[p + 1] = paras[p + 1], paras[p]
    if edit in ("added_line", "changed_and_added"):
        paras.append([rng.choice(ADDED_LINES)])
    return tuple(tuple(p) for p in paras)


def _near_duplicate(rng: random.Random, draft: _Draft, edit: str) -> str:
    """Edited text that stays above the similarity bar; falls back to gentler edits."""
    original = word_ngrams(draft.page.text)
    for attempt in (edit, "reordered_paragraphs", "added_line"):
        text = _join(_edit(rng, draft, attempt))
        if text != draft.page.text and jaccard(word_ngrams(text), original) > \
                _NEAR_DUP_MIN_JACCARD:
            return text
    return draft.page.text + "\n\n" + ADDED_LINES[0]


def _make_duplicates(seed: int, drafts: list[_Draft], n: int) -> list[SitePage]:
    """One exact copy at /print/..., the rest edited copies at /archive/..."""
    rng = _rng(seed, "duplicates")
    if n <= 0 or not drafts:
        return []
    eligible = [d for d in drafts if sum(map(len, d.paragraphs)) >= 12] or drafts
    picked = rng.sample(eligible, min(n, len(eligible)))
    picked += [rng.choice(drafts) for _ in range(n - len(picked))]
    pages: list[SitePage] = []
    taken: set[str] = set()
    for j, draft in enumerate(picked):
        stem = draft.page.path.rsplit("/", 1)[1].removesuffix(".html")
        exact = j == 0
        path = f"/print/{stem}.html" if exact else f"/archive/{stem}.html"
        while path in taken:
            path = path.removesuffix(".html") + "-copy.html"
        taken.add(path)
        text = draft.page.text if exact else _near_duplicate(rng, draft, _EDITS[(j - 1) % 4])
        pages.append(SitePage(path, "near_duplicate", "en", draft.page.title, text,
                              duplicate_of=draft.page.path, author=draft.page.author,
                              date=draft.page.date))
    return pages


# --- spam, thin and private pages --------------------------------------------------------------


def _spam_paths(rng: random.Random, n: int) -> list[tuple[str, str]]:
    products = rng.sample(SPAM_PRODUCTS, min(n, len(SPAM_PRODUCTS)))
    out = []
    for i in range(n):
        product = products[i % len(products)]
        suffix = "" if i < len(products) else f"-{i // len(products) + 1}"
        out.append((product, f"/deals/{_slugify(product)}{suffix}.html"))
    return out


def _spam_page(rng: random.Random, product: str, path: str, others: list[str]) -> SitePage:
    """Keyword stuffing, repeated shouting lines and a cloud of links."""
    upper, slug = product.upper(), _slugify(product)
    pool = [
        f"{upper} {upper} {upper} BEST PRICE GUARANTEED!!!",
        f"Cheap {product} cheap {product} discount {product} free shipping {product} sale",
        f"Click here for the best {product} deals online",
        f"100% FREE {upper} - ACT NOW - OFFER ENDS TODAY",
        f"Best {product} best {product} best {product} online",
        "LIMITED TIME OFFER!!! BUY NOW!!!",
        f"Why pay more for {product}? Order {product} today and save 90%",
    ]
    lines = rng.sample(pool, 5)
    repeated = rng.choice(lines)
    for _ in range(2):
        lines.insert(rng.randrange(len(lines) + 1), repeated)
    cloud = [f"{adj} {product}" for adj in SPAM_ADJECTIVES]
    lines += [" | ".join(cloud), "BUY NOW"]
    links: dict[str, str] = {}
    for line in lines:
        if line == line.upper() and " | " not in line:
            links.setdefault(line, f"https://deals.example.com/buy?item={slug}")
    targets = others or [path]
    for i, keyword in enumerate(cloud):
        links[keyword] = (targets[i % len(targets)] if i % 2 == 0
                          else f"https://deals.example.com/{slug}/{_slugify(keyword)}")
    return SitePage(path, "spam", "en", f"{upper}!!! BEST PRICE - BUY NOW", "\n\n".join(lines),
                    links=tuple(links.items()))


def _make_spam(seed: int, n: int) -> list[SitePage]:
    rng = _rng(seed, "spam")
    specs = _spam_paths(rng, n)
    paths = [p for _, p in specs]
    return [_spam_page(rng, product, path, [p for p in paths if p != path])
            for product, path in specs]


def _make_thin() -> list[SitePage]:
    return [
        SitePage("/about.html", "thin", "en", "About the Almanac", ABOUT_TEXT),
        SitePage("/articles/coming-soon.html", "thin", "en", "Coming Soon", COMING_SOON_TEXT),
    ]


def _make_private(seed: int, drafts: list[_Draft]) -> list[SitePage]:
    """Pages under /private/: linked from public pages, forbidden by robots.txt."""
    rng = _rng(seed, "private")
    notes, subscribers = parse_clusters(PRIVATE_TEXT)
    topic = rng.choice(EN_TOPICS)
    body = _compose(rng, topic, _slots(rng, "en"), 3, 4)
    title = f"Draft: {rng.choice(topic.titles)}"
    author = rng.choice(AUTHORS["en"])
    return [
        SitePage("/private/staff-notes.html", "disallowed", "en", "Staff Notes",
                 "\n\n".join(notes), author=author, date=_date(rng)),
        SitePage("/private/subscribers.html", "disallowed", "en", "Subscriber List",
                 "\n\n".join(subscribers), author=author, date=_date(rng)),
        SitePage(f"/private/drafts/{_slugify(title)}.html", "disallowed", "en", title,
                 _join(body), author=rng.choice(AUTHORS["en"]), date=_date(rng)),
    ]


# --- index pages -------------------------------------------------------------------------------


def _index(path: str, title: str, intro: str, links: Iterable[tuple[str, str]]) -> SitePage:
    links = tuple(links)
    text = "\n\n".join([intro, *(label for label, _ in links)])
    return SitePage(path, "index", "en", title, text, links=links)


def _make_indexes(articles: list[SitePage], thin: list[SitePage], dups: list[SitePage],
                  foreign: list[SitePage], spam: list[SitePage], private: list[SitePage],
                  ) -> list[SitePage]:
    """Home, one page per topic, International and Archive: together they reach every page."""
    topics = []
    for n, topic in enumerate(EN_TOPICS):
        prefix = f"/articles/{topic.slug}-"
        links = [(p.title, "../" + p.path[1:]) for p in articles if p.path.startswith(prefix)]
        if n == 0:
            links += [(p.title, "../" + p.path[1:]) for p in thin
                      if p.path.startswith("/articles/")]
        topics.append(_index(f"/topics/{topic.slug}.html", topic.name, topic.intro, links))
    international = _index("/international.html", "International", INTERNATIONAL_INTRO,
                           [(p.title, p.path[1:]) for p in foreign])
    archive = _index("/archive/index.html", "Archive", ARCHIVE_INTRO, [
        (f"{p.title} (printable version)", "../" + p.path[1:]) if p.path.startswith("/print/")
        else (f"{p.title} (archived copy)", p.path.removeprefix("/archive/")) for p in dups])
    home_links = [(t.title, t.path) for t in topics]
    home_links += [("International", international.path), ("From the archive", archive.path)]
    home_links += [(f"Partner offer {i + 1}", p.path) for i, p in enumerate(spam)]
    home_links += [(f"Staff area: {p.title}", p.path) for p in private]
    home = _index("/", SITE_NAME, HOME_INTRO, home_links)
    return [home, *topics, international, archive]


def build_site(seed: int = 0, n_articles: int = 40) -> tuple[SitePage, ...]:
    """All pages of the site with their ground truth; pure, so tests can call it freely."""
    if n_articles < 1:
        raise ValueError(f"n_articles must be at least 1, got {n_articles}")
    drafts = _make_articles(seed, n_articles)
    articles = [d.page for d in drafts]
    extra = max(1, round(n_articles / 5))
    dups = _make_duplicates(seed, drafts, extra)
    foreign = _make_foreign(seed, max(3, extra))
    spam = _make_spam(seed, max(2, round(n_articles / 10)))
    thin = _make_thin()
    private = _make_private(seed, drafts)
    indexes = _make_indexes(articles, thin, dups, foreign, spam, private)
    return (*indexes, *articles, *thin, *dups, *foreign, *spam, *private)


# --- HTML --------------------------------------------------------------------------------------

_STYLE = ("body{font-family:Georgia,serif;margin:0}.layout{display:flex;gap:2em}"
          ".sidebar{width:16em}.cookie-banner{position:fixed;bottom:0;background:#eee}")
_SCRIPT = """<script>
document.getElementById("cookie-accept").addEventListener("click", function () {
  document.cookie = "consent=accepted; path=/";
  document.getElementById("cookie-banner").remove();
});
</script>"""
_COOKIE_BANNER = """<div class="cookie-banner" id="cookie-banner" role="dialog">
<p>We use cookies to remember your preferences and to count visitors. By continuing to browse
you agree to our use of cookies.</p>
<button type="button" id="cookie-accept">Accept all cookies</button>
</div>"""
_FOOTER_LINKS = (("About", "/about.html"), ("Contact", "mailto:editor@millbrook-almanac.example"),
                 ("Staff login", "/private/staff-notes.html"),
                 ("Partners", "https://example.org/partners"), ("Back to top", "#top"))


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _link(label: str, href: str) -> str:
    return f'<a href="{_e(href)}">{_e(label)}</a>'


def _link_list(links: Iterable[tuple[str, str]], css: str = "") -> list[str]:
    attr = f' class="{css}"' if css else ""
    return [f"<ul{attr}>", *(f"<li>{_link(label, href)}</li>" for label, href in links), "</ul>"]


def _header(site: Sequence[SitePage]) -> list[str]:
    nav = [("Home", "/")] + [(p.title, p.path) for p in site
                             if p.kind == "index" and p.path != "/"]
    return ['<header class="site-header" id="top">',
            f'<a class="logo" href="/">{_e(SITE_NAME)}</a>',
            '<nav aria-label="Main">', *_link_list(nav), "</nav>", "</header>"]


def _sidebar(site: Sequence[SitePage]) -> list[str]:
    related = [(p.title, p.path) for p in site if p.kind == "article"][:5]
    return ['<aside class="sidebar">', "<h2>Related articles</h2>", *_link_list(related),
            "<h2>Newsletter</h2>",
            "<p>Get the almanac in your inbox every month. No spam, ever.</p>", "</aside>"]


def _footer() -> list[str]:
    return ['<footer class="site-footer">',
            f"<p>&copy; 2024 {_e(SITE_NAME)}. All rights reserved.</p>",
            *_link_list(_FOOTER_LINKS), "</footer>"]


def _pretty_date(date: str) -> str:
    year, month, day = (int(x) for x in date.split("-"))
    return f"{day} {_MONTHS[month - 1]} {year}"


def _main_content(page: SitePage) -> list[str]:
    """The <article>: title, byline, then paragraphs (or link lists for index/spam pages)."""
    out = ["<article>", f"<h1>{_e(page.title)}</h1>"]
    if page.author and page.date:
        out.append(f'<div class="byline">By <span class="author">{_e(page.author)}</span>'
                   f' &middot; <time datetime="{page.date}">{_pretty_date(page.date)}</time></div>')
    paragraphs = page.text.split("\n\n")
    if page.kind == "index":
        out.append(f"<p>{_e(paragraphs[0])}</p>")
        out += _link_list(page.links, "link-list")
    elif page.kind == "spam":
        hrefs = dict(page.links)
        for para in paragraphs:
            if " | " in para:
                out.append("<p>" + " | ".join(_link(k, hrefs[k]) for k in para.split(" | "))
                           + "</p>")
            elif para in hrefs:
                out.append(f"<p>{_link(para, hrefs[para])}</p>")
            else:
                out.append(f"<p>{_e(para)}</p>")
    else:
        out += [f"<p>{_e(para)}</p>" for para in paragraphs]
    out.append("</article>")
    return out


def render_page(page: SitePage, site: Sequence[SitePage]) -> str:
    """Full HTML document: identical boilerplate on every page around the page's <article>."""
    title = SITE_NAME if page.path == "/" else f"{page.title} | {SITE_NAME}"
    head = ["<!DOCTYPE html>", f'<html lang="{_e(page.lang)}">', "<head>",
            f'<meta charset="{_e(page.encoding)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>"]
    if page.author:
        head.append(f'<meta name="author" content="{_e(page.author)}">')
    if page.date:
        head.append(f'<meta name="date" content="{_e(page.date)}">')
    head += [f"<style>{_STYLE}</style>", "</head>"]
    body = ["<body>", _COOKIE_BANNER, *_header(site), '<div class="layout">',
            '<main id="content">', *_main_content(page), "</main>", *_sidebar(site), "</div>",
            *_footer(), _SCRIPT, "</body>", "</html>"]
    return "\n".join(head + body) + "\n"


# --- robots.txt and sitemap --------------------------------------------------------------------


def _robots(base_url: str) -> str:
    return (f"# robots.txt for {SITE_NAME} (synthetic demo site)\n"
            "User-agent: BadBot\nDisallow: /\n\n"
            f"User-agent: *\nCrawl-delay: {CRAWL_DELAY}\nDisallow: {DISALLOWED_PREFIX}\n\n"
            f"Sitemap: {base_url}/sitemap.xml\n")


def _sitemap(pages: Sequence[SitePage], base_url: str) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">']
    for page in pages:
        if not page.allowed:
            continue
        lastmod = f"<lastmod>{page.date}</lastmod>" if page.date else ""
        lines.append(f"  <url><loc>{xml_escape(base_url + page.path)}</loc>{lastmod}</url>")
    lines.append("</urlset>")
    return "\n".join(lines) + "\n"


# --- raw dumps ---------------------------------------------------------------------------------


def _record(rid: str, page: SitePage, base_url: str) -> dict:
    return {"id": rid, "url": base_url + page.path, "title": page.title, "text": page.text,
            "lang_hint": page.lang}


def _json_line(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _broken_jsonl_line(kind: str, line_no: int, base_url: str) -> tuple[bytes, str | None]:
    """One deliberately bad JSONL line and the id it carries (if any)."""
    rid = f"bad-{line_no:04d}"
    rec = {"id": rid, "url": f"{base_url}/lost/{rid}.html", "title": "A record that went wrong",
           "text": "This record was damaged somewhere between the database and the export.",
           "lang_hint": "en"}
    if kind == "invalid_json":
        full = json.dumps(rec, ensure_ascii=False)
        return full[: len(full) // 2].encode("utf-8"), None
    if kind == "not_an_object":
        return _json_line(list(rec.values())), None
    if kind == "invalid_encoding":
        rec.update(text="@@TEXT@@", lang_hint="fr")
        return _json_line(rec).replace(b"@@TEXT@@", _MOJIBAKE_TEXT.encode("latin-1")), rid
    if kind == "missing_text":
        del rec["text"]
    elif kind == "empty_text":
        rec["text"] = "   \n\t  "
    elif kind == "text_not_string":
        rec["text"] = 12345
    elif kind == "blank_line":
        return b"", None
    else:
        raise ValueError(f"unknown breakage {kind!r}")
    return _json_line(rec), rid


def _interleave(good: list[bytes], broken: Sequence[tuple[int, str]],
                make_bad: Callable[[str, int], bytes],
                ) -> tuple[list[bytes], list[tuple[int, str, bytes]]]:
    """Put bad items at their 1-based positions (or at the end if the good ones run out)."""
    out: list[bytes] = []
    placed: list[tuple[int, str, bytes]] = []
    pending = sorted(broken)
    gi = 0
    while gi < len(good) or pending:
        pos = len(out) + 1
        if pending and (pending[0][0] == pos or gi >= len(good)):
            kind = pending.pop(0)[1]
            item = make_bad(kind, pos)
            out.append(item)
            placed.append((pos, kind, item))
        else:
            out.append(good[gi])
            gi += 1
    return out, placed


def _jsonl_dump(pages: Sequence[SitePage], base_url: str) -> tuple[bytes, dict]:
    records = [_record(f"doc-{i + 1:05d}", p, base_url)
               for i, p in enumerate(p for p in pages if p.kind in DUMP_KINDS)]
    ids: dict[int, str | None] = {}

    def make_bad(kind: str, pos: int) -> bytes:
        line, ids[pos] = _broken_jsonl_line(kind, pos, base_url)
        return line

    lines, placed = _interleave([_json_line(r) for r in records], JSONL_BROKEN, make_bad)
    info = {
        "numbering": "1-based physical line numbers",
        "total_lines": len(lines),
        "good_records": len(records),
        "good_ids": [r["id"] for r in records],
        "broken": [{"line": pos, "kind": kind, "id": ids[pos], "detail": BROKEN_DETAILS[kind]}
                   for pos, kind, _ in placed],
    }
    return b"".join(line + b"\n" for line in lines), info


def _csv_row(fields: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()


def _broken_csv_row(kind: str, row: int, base_url: str) -> bytes:
    rid = f"bad-{row:04d}"
    url = f"{base_url}/lost/{rid}.html"
    if kind == "wrong_column_count":
        text = "Damaged export, this row, split at every comma, has too many columns."
        return _csv_row([rid, url, "A row that went wrong", *text.split(","), "en"]).encode()
    if kind == "invalid_encoding":
        return _csv_row([rid, url, "Un café", _MOJIBAKE_TEXT, "fr"]).encode("latin-1")
    raise ValueError(f"unknown breakage {kind!r}")


def _csv_subset(pages: Sequence[SitePage]) -> list[SitePage]:
    """Every third article plus foreign and thin pages: overlaps the JSONL, but differs."""
    articles = [p for p in pages if p.kind == "article"]
    return articles[::3] + [p for p in pages if p.kind in ("foreign", "thin")]


def _csv_dump(pages: Sequence[SitePage], base_url: str) -> tuple[bytes, dict]:
    subset = _csv_subset(pages)
    ids = [f"csv-{i + 1:05d}" for i in range(len(subset))]
    good = [_csv_row(_record(rid, p, base_url).values()).encode()
            for rid, p in zip(ids, subset, strict=True)]
    rows, placed = _interleave(good, CSV_BROKEN,
                               lambda kind, pos: _broken_csv_row(kind, pos, base_url))
    header = _csv_row(CSV_HEADER).encode()
    starts, line = [], 2  # physical line where each data row starts (header is line 1)
    for row in rows:
        starts.append(line)
        line += row.count(b"\n")
    info = {
        "numbering": "row: 1-based data row as csv.reader yields it after the header "
                     "(header not counted); line: 1-based physical line where the row starts",
        "header": list(CSV_HEADER),
        "total_rows": len(rows),
        "good_records": len(good),
        "good_ids": ids,
        "broken": [{"row": pos, "line": starts[pos - 1], "kind": kind, "id": f"bad-{pos:04d}",
                    "detail": BROKEN_DETAILS[kind]} for pos, kind, _ in placed],
    }
    return header + b"".join(rows), info


# --- writing -----------------------------------------------------------------------------------


def _json_bytes(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_site(out_dir: Path, seed: int = 0, n_articles: int = 40,
               base_url: str = DEFAULT_BASE_URL) -> SiteSummary:
    """Write site/, raw/ and site_manifest.json under out_dir; same arguments, same bytes.

    ``base_url`` is where the site will be served; it is used for the absolute URLs in
    sitemap.xml, robots.txt and the dumps.
    """
    out_dir = Path(out_dir)
    base_url = base_url.rstrip("/")
    pages = build_site(seed, n_articles)
    site_dir = out_dir / "site"
    for page in pages:
        data = render_page(page, pages).encode(page.encoding, errors="xmlcharrefreplace")
        _write(site_dir / page.file, data)
    _write(site_dir / "robots.txt", _robots(base_url).encode())
    _write(site_dir / "sitemap.xml", _sitemap(pages, base_url).encode())

    jsonl, jsonl_info = _jsonl_dump(pages, base_url)
    csv_data, csv_info = _csv_dump(pages, base_url)
    _write(out_dir / "raw" / "articles.jsonl", jsonl)
    _write(out_dir / "raw" / "articles.csv", csv_data)
    _write(out_dir / "raw" / "broken_rows.json",
           _json_bytes({"articles.jsonl": jsonl_info, "articles.csv": csv_info}))

    counts = {kind: sum(p.kind == kind for p in pages) for kind in KINDS}
    summary = SiteSummary(out_dir, pages, counts, seed, base_url)
    _write(out_dir / "site_manifest.json", _json_bytes(summary.to_json()))
    return summary
