"""The WCXB extraction metric: word F1, snippet rates, page loading, pooled evaluation."""

from __future__ import annotations

import functools
import gzip
import json
import re
from pathlib import Path

import pytest

from curate.eval_extraction import (
    WCXB_DEV_DIR,
    EvalReport,
    Page,
    evaluate,
    load_pages,
    score_page,
    snippet_rate,
    trafilatura_baseline,
    word_prf,
)


def _page(main: str, with_: tuple[str, ...] = (), without: tuple[str, ...] = (),
          page_type: str = "article", pid: str = "0001") -> Page:
    return Page(id=pid, url=f"https://example.org/{pid}", page_type=page_type, title="",
                html=b"", main_content=main, with_snippets=with_, without_snippets=without)


def test_perfect_extraction_scores_one_whatever_the_case_and_punctuation():
    assert word_prf("The cat sat, on the mat!", "the CAT sat on\nthe mat") == (1.0, 1.0, 1.0)


def test_disjoint_extraction_scores_zero():
    assert word_prf("completely different words", "the cat sat") == (0.0, 0.0, 0.0)


def test_repeated_words_are_clipped():
    # "the" x3 extracted against "the" x1 in gold: only one of them counts
    precision, recall, f1 = word_prf("the the the cat", "the cat")
    assert (precision, recall) == (0.5, 1.0)
    assert f1 == pytest.approx(2 / 3)
    assert word_prf("cat", "the cat the cat") == pytest.approx((1.0, 0.25, 0.4))


def test_empty_extraction_or_gold_never_divides_by_zero():
    assert word_prf("", "the cat") == (0.0, 0.0, 0.0)
    assert word_prf("...", "the cat") == (0.0, 0.0, 0.0)  # punctuation only: no words
    assert word_prf("the cat", "") == (0.0, 0.0, 0.0)
    assert word_prf("", "") == (1.0, 1.0, 1.0)
    assert word_prf(" - ", "!") == (1.0, 1.0, 1.0)


def test_words_are_unicode_word_runs():
    assert word_prf("Größe: 10 €; naïve café", "größe 10 naïve café")[2] == 1.0
    assert word_prf("日本語のテキスト", "日本語のテキスト")[2] == 1.0


def test_snippets_match_case_and_whitespace_insensitively():
    text = "Hello\n\nWORLD, this is\ta   test."
    assert snippet_rate(text, ["hello world", "This is a test."]) == 1.0
    assert snippet_rate(text, ["hello world", "this is the test"]) == 0.5
    assert snippet_rate(text, ["hello, world"]) == 0.0  # punctuation must match
    assert snippet_rate(text, []) is None
    assert snippet_rate(text, ["", "  "]) is None  # blank snippets are not counted
    assert snippet_rate("", ["anything"]) == 0.0


def test_score_page_combines_f1_and_both_snippet_rates():
    page = _page("The cat sat on the mat.", with_=("cat sat", "the dog"),
                 without=("Subscribe now", "Cookie policy"))
    score = score_page("The cat sat on the mat. Subscribe   NOW", page, seconds=0.5)
    assert score.recall == 1.0 and score.precision == pytest.approx(6 / 8)
    assert (score.with_rate, score.without_rate) == (0.5, 0.5)
    assert (score.id, score.page_type, score.seconds) == ("0001", "article", 0.5)
    assert score_page("x", _page("x")).with_rate is None


# --- loading and evaluating a benchmark folder ---------------------------------------------

PAGES = [
    ("0001", "article", "<html><body><nav>Home | About</nav><p>Rivers carry water to the sea."
     "</p><footer>Subscribe now</footer></body></html>", "Rivers carry water to the sea.",
     ["Rivers carry water"], ["Subscribe now"]),
    ("0002", "article", "<html><body><p>Mountains are tall and old.</p></body></html>",
     "Mountains are tall and old.", ["tall and old"], []),
    ("0003", "product", "<html><body><p>Café crème, 3 €</p></body></html>",
     "Café crème, 3", [], ["Add to cart"]),
]


def _write_benchmark(root: Path, encoding: dict[str, str] | None = None) -> tuple[Path, Path]:
    html_dir, gold_dir = root / "html", root / "gold"
    html_dir.mkdir(parents=True)
    gold_dir.mkdir()
    for pid, ptype, html, main, with_, without in PAGES:
        enc = (encoding or {}).get(pid, "utf-8")
        (html_dir / f"{pid}.html.gz").write_bytes(gzip.compress(html.encode(enc)))
        gold = {"id": pid, "url": f"https://example.org/{pid}", "page_type": ptype,
                "title": f"page {pid}", "main_content": main, "with": with_, "without": without}
        (gold_dir / f"{pid}.json").write_text(json.dumps(gold))
    return html_dir, gold_dir


def tag_stripper(html: bytes, url: str, keep: str = "p") -> str:
    """A toy extractor (module level, so it pickles): the text of <``keep``> elements."""
    text = html.decode("utf-8", errors="replace")
    return "\n".join(re.findall(rf"<{keep}>(.*?)</{keep}>", text, flags=re.S))


def everything(html: bytes, url: str) -> str:
    return re.sub(r"<[^>]+>", " ", html.decode("utf-8", errors="replace"))


def broken(html: bytes, url: str) -> str:
    raise RuntimeError("parser exploded")


def test_load_pages_reads_gzip_html_and_gold(tmp_path):
    html_dir, gold_dir = _write_benchmark(tmp_path, encoding={"0003": "cp1252"})
    pages = load_pages(html_dir, gold_dir)
    assert [p.id for p in pages] == ["0001", "0002", "0003"]
    assert pages[0].html.startswith(b"<html>") and pages[0].url == "https://example.org/0001"
    assert pages[2].html == PAGES[2][2].encode("cp1252")  # bytes as stored, not decoded
    assert pages[0].with_snippets == ("Rivers carry water",) and pages[1].without_snippets == ()
    assert [p.id for p in load_pages(html_dir, gold_dir, limit=2)] == ["0001", "0002"]

    (html_dir / "0002.html.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"0002\.html\.gz"):
        load_pages(html_dir, gold_dir)
    with pytest.raises(FileNotFoundError, match="benchmark folder not found"):
        load_pages(tmp_path / "nope", gold_dir)


def test_evaluate_scores_every_page_and_summarises_by_type(tmp_path):
    pages = load_pages(*_write_benchmark(tmp_path))
    report = evaluate(pages, tag_stripper)
    assert [s.id for s in report.scores] == ["0001", "0002", "0003"]
    assert [s.f1 for s in report.scores[:2]] == [1.0, 1.0]
    summary = report.summary()
    assert list(summary) == ["article", "product", "overall"]
    assert summary["article"]["pages"] == 2 and summary["overall"]["pages"] == 3
    assert summary["overall"]["f1"] == pytest.approx(sum(s.f1 for s in report.scores) / 3)
    # the pages without snippets of a kind are left out of that average
    assert summary["overall"]["with_rate"] == 1.0 and summary["overall"]["without_rate"] == 0.0
    assert summary["product"]["with_rate"] is None

    leaky = evaluate(pages, everything)
    assert leaky.summary()["overall"]["without_rate"] == 0.5
    assert leaky.f1 < report.f1

    table = report.table()
    assert table.splitlines()[0].startswith("| page type | pages | F1 |")
    assert "| article | 2 | 1.000 |" in table and "| **overall** | 3 |" in table
    assert "| product | 1 |" in table and " - |" in table
    assert json.loads(json.dumps(report.to_json()))["summary"]["overall"]["pages"] == 3


def test_a_failing_extractor_scores_zero_and_is_recorded(tmp_path):
    report = evaluate(load_pages(*_write_benchmark(tmp_path)), broken)
    assert report.f1 == 0.0
    assert report.scores[0].error == "RuntimeError: parser exploded"
    assert report.summary()["overall"]["errors"] == 3


def test_a_process_pool_gives_the_same_scores(tmp_path):
    pages = load_pages(*_write_benchmark(tmp_path))
    extractor = functools.partial(tag_stripper, keep="p")
    serial = evaluate(pages, extractor)
    pooled = evaluate(pages, extractor, workers=2)
    strip = [{**s.__dict__, "seconds": 0} for s in serial.scores]
    assert [{**s.__dict__, "seconds": 0} for s in pooled.scores] == strip
    assert pooled.workers == 2 and pooled.wall_seconds > 0


def test_empty_report():
    report = EvalReport([])
    assert report.summary()["overall"]["pages"] == 0 and report.f1 == 0.0
    assert "| **overall** | 0 | - |" in report.table()


def test_trafilatura_baseline_returns_text_or_empty():
    html = ("<html><body><article><p>" + "Rivers carry water to the sea every day. " * 20
            + "</p></article></body></html>").encode()
    assert "Rivers carry water" in trafilatura_baseline(html, "https://example.org/a")
    assert trafilatura_baseline(b"", "https://example.org/b") == ""


# --- the real shared pages -----------------------------------------------------------------

def test_trafilatura_baseline_on_real_wcxb_pages():
    if not (WCXB_DEV_DIR / "gold").is_dir():
        pytest.skip(f"shared WCXB data not found at {WCXB_DEV_DIR}")
    pages = load_pages(WCXB_DEV_DIR / "html", WCXB_DEV_DIR / "gold", limit=20)
    assert len(pages) == 20
    report = evaluate(pages, trafilatura_baseline, workers=2)
    assert not any(s.error for s in report.scores)
    assert 0.5 < report.f1 <= 1.0, report.table()
    assert report.summary()["overall"]["with_rate"] > 0.5
