"""The demo site generator: determinism, crawlability, planted duplicates, encodings, dumps."""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import re
import xml.etree.ElementTree as ET
from collections import deque
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import pytest

from curate import demo_text
from curate.demo_site import SitePage, build_site, render_page, write_site

BASE = "http://127.0.0.1:8000"
DUMP_KINDS = {"article", "near_duplicate", "foreign", "spam"}


# --- helpers (independent of the generator's own) -----------------------------------------------


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


class LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


class ArticleParser(HTMLParser):
    """Text of each <p>/<li> block inside <article>, the way an ideal extractor sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.in_article = False
        self.block: list[str] | None = None
        self.blocks: list[str] = []
        self.html_lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.html_lang = dict(attrs).get("lang")
        if tag == "article":
            self.in_article = True
        elif self.in_article and tag in ("p", "li"):
            self.block = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self.in_article = False
        elif self.block is not None and tag in ("p", "li"):
            self.blocks.append("".join(self.block))
            self.block = None

    def handle_data(self, data: str) -> None:
        if self.block is not None:
            self.block.append(data)


def page_file(out: Path, path: str) -> Path:
    rel = path.lstrip("/")
    return out / "site" / (rel + "index.html" if rel == "" or rel.endswith("/") else rel)


def read_page(out: Path, page: dict) -> str:
    return page_file(out, page["path"]).read_bytes().decode(page["encoding"])


def parse_article(doc: str) -> ArticleParser:
    parser = ArticleParser()
    parser.feed(doc)
    parser.close()
    return parser


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_site(root)
    return root


@pytest.fixture(scope="module")
def manifest(out: Path) -> dict:
    return json.loads((out / "site_manifest.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def pages(manifest: dict) -> list[dict]:
    return manifest["pages"]


@pytest.fixture(scope="module")
def broken(out: Path) -> dict:
    return json.loads((out / "raw" / "broken_rows.json").read_text("utf-8"))


# --- determinism and shape -----------------------------------------------------------------------


def test_same_seed_gives_byte_identical_tree(tmp_path: Path) -> None:
    write_site(tmp_path / "a", seed=7)
    write_site(tmp_path / "b", seed=7)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert len(a) > 70
    assert a == b


def test_different_seed_gives_different_content(tmp_path: Path) -> None:
    write_site(tmp_path / "a", seed=0)
    write_site(tmp_path / "b", seed=1)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a["site_manifest.json"] != b["site_manifest.json"]
    assert a["raw/articles.jsonl"] != b["raw/articles.jsonl"]
    assert a["site/articles/river-ecology-01.html"] != b["site/articles/river-ecology-01.html"]


def test_build_site_is_pure_and_matches_the_manifest(pages: list[dict]) -> None:
    site = build_site(0, 40)
    assert site == build_site(0, 40)
    assert [p.path for p in site] == [p["path"] for p in pages]
    assert [p.text for p in site] == [p["text"] for p in pages]
    assert len({p.path for p in site}) == len(site)


def test_default_counts_and_size(out: Path, manifest: dict) -> None:
    assert manifest["counts"] == {"article": 40, "near_duplicate": 8, "spam": 4, "foreign": 8,
                                  "index": 9, "disallowed": 3, "thin": 2}
    assert sum(manifest["counts"].values()) == len(manifest["pages"])
    assert manifest["base_url"] == BASE
    assert sum(len(data) for data in tree(out).values()) < 1_000_000


def test_every_manifest_page_exists_and_shows_its_title(out: Path, pages: list[dict]) -> None:
    for page in pages:
        doc = read_page(out, page)
        assert f"<h1>{html.escape(page['title'])}</h1>" in doc, page["path"]
        assert f"<title>{html.escape(page['title'])}" in doc or page["path"] == "/"


def test_rendered_article_text_equals_expected_text(out: Path, pages: list[dict]) -> None:
    for page in pages:
        blocks = parse_article(read_page(out, page)).blocks
        assert "\n\n".join(blocks) == page["text"], page["path"]


def test_articles_are_real_paragraphs(pages: list[dict]) -> None:
    sentence_end = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"])")
    for page in pages:
        if page["kind"] != "article":
            continue
        paragraphs = page["text"].split("\n\n")
        assert 3 <= len(paragraphs) <= 7, page["path"]
        for para in paragraphs:
            assert 3 <= len(sentence_end.split(para)) <= 6, para
        assert page["author"] and re.fullmatch(r"\d{4}-\d\d-\d\d", page["date"])


def test_boilerplate_is_identical_on_every_page(out: Path, pages: list[dict]) -> None:
    chrome = set()
    for page in pages:
        doc = read_page(out, page)
        body = doc[doc.index("<body>"):]
        chrome.add(re.sub(r'<main id="content">.*</main>', "", body, flags=re.S))
    assert len(chrome) == 1
    (only,) = chrome
    for marker in ('class="cookie-banner"', "<header", "<nav", '<aside class="sidebar"',
                   "Related articles", "<footer", "&copy;", "<script>"):
        assert marker in only


def test_meta_tags_and_lang(out: Path, pages: list[dict]) -> None:
    for page in pages:
        doc = read_page(out, page)
        assert parse_article(doc).html_lang == page["lang"]
        assert f'<meta charset="{page["encoding"]}">' in doc
        if page["kind"] == "article":
            assert f'<meta name="author" content="{html.escape(page["author"])}">' in doc
            assert f'<meta name="date" content="{page["date"]}">' in doc
            assert f'<time datetime="{page["date"]}">' in doc


# --- crawling ------------------------------------------------------------------------------------


def test_robots_txt(out: Path) -> None:
    text = (out / "site" / "robots.txt").read_text("utf-8")
    assert "Crawl-delay: 0.05" in text.splitlines()
    parser = RobotFileParser()
    parser.parse(text.splitlines())
    assert not parser.can_fetch("curate-test", f"{BASE}/private/staff-notes.html")
    assert not parser.can_fetch("curate-test", f"{BASE}/private/drafts/anything.html")
    assert parser.can_fetch("curate-test", f"{BASE}/articles/river-ecology-01.html")
    assert parser.can_fetch("curate-test", f"{BASE}/")
    assert not parser.can_fetch("BadBot", f"{BASE}/")
    assert parser.site_maps() == [f"{BASE}/sitemap.xml"]


def test_sitemap_lists_exactly_the_allowed_pages(out: Path, pages: list[dict]) -> None:
    root = ET.parse(out / "site" / "sitemap.xml").getroot()
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    assert root.tag == "{http://www.sitemaps.org/schemas/sitemap/0.9}urlset"
    locs = [el.text for el in root.findall("s:url/s:loc", ns)]
    allowed = [BASE + p["path"] for p in pages if not p["path"].startswith("/private/")]
    assert len(locs) == len(set(locs))
    assert sorted(locs) == sorted(allowed)
    assert len(allowed) == len(pages) - 3


def test_every_allowed_page_is_reachable_from_home(out: Path, pages: list[dict]) -> None:
    by_path = {p["path"]: p for p in pages}
    seen, linked_private, dangling = {"/"}, set(), set()
    queue = deque(["/"])
    while queue:
        path = queue.popleft()
        parser = LinkParser()
        parser.feed(read_page(out, by_path[path]))
        for href in parser.hrefs:
            url = urlsplit(urljoin(BASE + path, href))
            if url.scheme != "http" or url.netloc != "127.0.0.1:8000":
                continue
            if url.path.startswith("/private/"):
                linked_private.add(url.path)
            elif url.path not in by_path:
                dangling.add(url.path)
            elif url.path not in seen:
                seen.add(url.path)
                queue.append(url.path)
    private = {p["path"] for p in pages if p["kind"] == "disallowed"}
    assert seen == set(by_path) - private
    assert linked_private == private  # linked, so a crawler must actively skip them
    assert not dangling
    assert all(path.startswith("/private/") for path in private)


# --- planted duplicates and languages ------------------------------------------------------------


def test_near_duplicates_are_near_but_not_identical(out: Path, pages: list[dict]) -> None:
    by_path = {p["path"]: p for p in pages}
    dups = [p for p in pages if p["kind"] == "near_duplicate"]
    exact = [p for p in dups if p["text"] == by_path[p["duplicate_of"]]["text"]]
    assert len(dups) == 8
    assert len(exact) == 1 and exact[0]["exact_duplicate"]
    original = by_path[exact[0]["duplicate_of"]]
    assert page_file(out, exact[0]["path"]).read_bytes() == \
        page_file(out, original["path"]).read_bytes()
    for dup in dups:
        original = by_path[dup["duplicate_of"]]
        assert original["kind"] == "article"
        assert jaccard(dup["text"], original["text"]) > 0.7, dup["path"]
        if dup is not exact[0]:
            assert dup["text"] != original["text"]
            assert not dup["exact_duplicate"]
    assert all(p["duplicate_of"] is None for p in pages if p["kind"] != "near_duplicate")


def test_distinct_articles_are_not_near_duplicates(pages: list[dict]) -> None:
    articles = [p for p in pages if p["kind"] == "article"]
    worst = max(jaccard(a["text"], b["text"]) for a, b in itertools.combinations(articles, 2))
    assert worst < 0.5


def test_foreign_pages_declare_their_language(out: Path, pages: list[dict]) -> None:
    markers = {"fr": r"\b(le|la|les|des)\b", "de": r"\b(der|die|das|und)\b",
               "es": r"\b(el|los|las|una)\b"}
    foreign = [p for p in pages if p["kind"] == "foreign"]
    assert sorted({p["lang"] for p in foreign}) == ["de", "es", "fr"]
    for page in foreign:
        doc = read_page(out, page)
        assert f'<html lang="{page["lang"]}">' in doc
        assert len(re.findall(markers[page["lang"]], page["text"])) >= 5
    assert all(p["lang"] == "en" for p in pages if p["kind"] != "foreign")


def test_cp1252_pages_are_not_utf8(out: Path, pages: list[dict]) -> None:
    cp1252 = [p for p in pages if p["encoding"] == "windows-1252"]
    assert sorted(p["lang"] for p in cp1252) == ["de", "fr"]
    for page in cp1252:
        data = page_file(out, page["path"]).read_bytes()
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        doc = data.decode("cp1252")
        assert '<meta charset="windows-1252">' in doc
        assert parse_article(doc).blocks == page["text"].split("\n\n")
        assert re.search(r"[^\x00-\x7f]", page["text"])
    for page in pages:
        if page["encoding"] == "utf-8":
            page_file(out, page["path"]).read_bytes().decode("utf-8")


# --- raw dumps -----------------------------------------------------------------------------------


def test_jsonl_breakage_is_exactly_where_declared(out: Path, pages: list[dict],
                                                  broken: dict) -> None:
    info = broken["articles.jsonl"]
    data = (out / "raw" / "articles.jsonl").read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert len(lines) == info["total_lines"]
    bad = {b["line"]: b["kind"] for b in info["broken"]}
    assert sorted(bad.values()) == sorted(["invalid_json", "not_an_object", "invalid_encoding",
                                           "missing_text", "empty_text", "text_not_string",
                                           "blank_line"])
    texts_by_url = {BASE + p["path"]: p["text"] for p in pages}
    good_ids = []
    for n, line in enumerate(lines, start=1):
        kind = bad.get(n)
        if kind == "blank_line":
            assert line == b""
            continue
        if kind == "invalid_encoding":
            with pytest.raises(UnicodeDecodeError):
                line.decode("utf-8")
            assert isinstance(json.loads(line.decode("latin-1"))["text"], str)
            continue
        text = line.decode("utf-8")
        if kind == "invalid_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
            continue
        value = json.loads(text)
        if kind == "not_an_object":
            assert isinstance(value, list)
        elif kind == "missing_text":
            assert isinstance(value, dict) and "text" not in value
        elif kind == "empty_text":
            assert isinstance(value["text"], str) and not value["text"].strip()
        elif kind == "text_not_string":
            assert not isinstance(value["text"], str)
        else:
            assert kind is None
            assert set(value) == {"id", "url", "title", "text", "lang_hint"}
            assert isinstance(value["text"], str) and value["text"].strip()
            assert texts_by_url[value["url"]] == value["text"]
            good_ids.append(value["id"])
    assert good_ids == info["good_ids"]
    assert len(set(good_ids)) == info["good_records"] == len(good_ids)
    assert info["good_records"] == sum(p["kind"] in DUMP_KINDS for p in pages)


def test_csv_breakage_is_exactly_where_declared(out: Path, pages: list[dict],
                                                broken: dict) -> None:
    info = broken["articles.csv"]
    data = (out / "raw" / "articles.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="surrogateescape")))
    assert next(reader) == info["header"] == ["id", "url", "title", "text", "lang_hint"]
    bad = {b["row"]: b for b in info["broken"]}
    assert sorted(b["kind"] for b in bad.values()) == ["invalid_encoding", "wrong_column_count"]
    texts_by_url = {BASE + p["path"]: p["text"] for p in pages}
    good_ids, good_texts, n, start = [], [], 0, 2
    for n, row in enumerate(reader, start=1):
        has_bad_bytes = any(re.search("[\udc80-\udcff]", cell) for cell in row)
        if n in bad:
            assert bad[n]["line"] == start
            if bad[n]["kind"] == "wrong_column_count":
                assert len(row) != 5 and not has_bad_bytes
            else:
                assert len(row) == 5 and has_bad_bytes
        else:
            assert len(row) == 5 and not has_bad_bytes
            assert texts_by_url[row[1]] == row[3] and row[3].strip()
            good_ids.append(row[0])
            good_texts.append(row[3])
        start = reader.line_num + 1
    assert n == info["total_rows"]
    assert good_ids == info["good_ids"] and len(good_ids) == info["good_records"]
    assert any('"' in t for t in good_texts)
    assert any("," in t and "\n" in t for t in good_texts)


def test_csv_and_jsonl_hold_different_subsets(out: Path) -> None:
    jsonl_urls = set()
    for line in (out / "raw" / "articles.jsonl").read_bytes().split(b"\n"):
        try:
            value = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(value, dict):
            jsonl_urls.add(value["url"])
    text = (out / "raw" / "articles.csv").read_bytes().decode("utf-8", "surrogateescape")
    csv_urls = {row[1] for row in list(csv.reader(io.StringIO(text)))[1:]}
    assert csv_urls & jsonl_urls
    assert csv_urls - jsonl_urls and jsonl_urls - csv_urls


# --- API edges -----------------------------------------------------------------------------------


def test_render_page_escapes_text() -> None:
    page = SitePage("/x.html", "article", "en", 'Fish & "Chips" <b>', "a < b & c\n\nsecond",
                    None)
    doc = render_page(page, (page,))
    assert "<h1>Fish &amp; &quot;Chips&quot; &lt;b&gt;</h1>" in doc
    assert "<p>a &lt; b &amp; c</p>\n<p>second</p>" in doc
    assert parse_article(doc).blocks == ["a < b & c", "second"]


def test_small_site_and_custom_base_url(tmp_path: Path) -> None:
    summary = write_site(tmp_path, seed=3, n_articles=3, base_url="http://example.test:9000/")
    assert summary.counts["article"] == 3 and summary.counts["near_duplicate"] == 1
    robots = (tmp_path / "site" / "robots.txt").read_text("utf-8")
    assert "Sitemap: http://example.test:9000/sitemap.xml" in robots
    sitemap = (tmp_path / "site" / "sitemap.xml").read_text("utf-8")
    assert "<loc>http://example.test:9000/</loc>" in sitemap
    info = json.loads((tmp_path / "raw" / "broken_rows.json").read_text("utf-8"))
    assert len(info["articles.jsonl"]["broken"]) == 7  # appended when records run out
    assert len(info["articles.csv"]["broken"]) == 2
    with pytest.raises(ValueError):
        build_site(0, 0)


def test_corpus_is_large_enough_and_formats() -> None:
    slots = {k: v[0] for k, v in demo_text.EN_SLOTS.items()}
    slots |= {"month": "May", "year": "1880", "recent_year": "2001", "count": "5",
              "old_year": "1400"}
    english = [s for t in demo_text.EN_TOPICS for c in t.clusters for s in c]
    assert len(english) >= 150 and len(set(english)) == len(english)
    for topic in demo_text.FOREIGN_TOPICS:
        sentences = [s for c in topic.clusters for s in c]
        assert len(set(sentences)) >= 25, topic.lang
        english += sentences
    for sentence in english:
        filled = sentence.format(**slots)
        assert "{" not in filled and filled[-1] in ".!?\"", sentence
