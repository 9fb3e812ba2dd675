"""Extraction: charsets, rejections with reasons, WARC/WET/HTML/JSONL inputs, damaged WARCs."""

from __future__ import annotations

import gzip
import json

import pytest

from curate.decode import decode_html
from curate.extract import ExtractConfig, Rejection, extract_html
from curate.runner import run_stage
from curate.web_extract import EXTRACT, extract_unit, plan_extract
from schemas import read_shard

from .warcs import write_warc

PARAGRAPHS = [
    "Le boulanger prépare la pâte très tôt le matin, avant que le village ne se réveille.",
    "Il façonne les baguettes à la main et surveille la température du four à bois.",
    "Les habitués arrivent vers sept heures et repartent avec du pain encore chaud.",
]


def page(body_paragraphs: list[str], title: str = "Le pain du village", meta: str = "",
         lang: str = "fr") -> str:
    ps = "".join(f"<p>{p}</p>" for p in body_paragraphs * 3)
    return (f"<!DOCTYPE html><html lang='{lang}'><head>{meta}<title>{title}</title></head>"
            f"<body><nav><a href='/'>Accueil</a> | <a href='/a'>Archives</a></nav>"
            f"<article><h1>{title}</h1>{ps}</article><footer>© 2024 Le Village</footer>"
            f"</body></html>")


FRENCH = page(PARAGRAPHS)


@pytest.mark.parametrize(("data", "content_type", "encoding"), [
    (page(PARAGRAPHS, meta="<meta charset='windows-1252'>").encode("cp1252"), None, "cp1252"),
    # declared UTF-8, actually windows-1252: the declaration is not trusted
    (page(PARAGRAPHS, meta="<meta charset='utf-8'>").encode("cp1252"), None, None),
    # header says latin-1, bytes are UTF-8
    (FRENCH.encode("utf-8"), "text/html; charset=iso-8859-1", "utf-8"),
    # no declaration at all
    (FRENCH.encode("utf-8"), None, "utf-8"),
    (FRENCH.encode("cp1252"), None, None),
    (b"\xef\xbb\xbf" + FRENCH.encode("utf-8"), None, "utf-8"),
])
def test_wrong_or_missing_charsets_decode_correctly(data, content_type, encoding):
    decoded = decode_html(data, content_type)
    assert "pâte très tôt" in decoded.text and "façonne" in decoded.text
    if encoding:
        assert decoded.encoding == encoding
    out = extract_html(data, "https://village.example/pain", ExtractConfig(), content_type)
    assert "Le boulanger prépare la pâte" in out.text
    assert "Accueil" not in out.text  # navigation is boilerplate


def test_extraction_keeps_metadata():
    html = page(PARAGRAPHS, meta="<meta name='author' content='Jeanne Martin'>"
                "<meta name='date' content='2024-03-05'>")
    out = extract_html(html.encode(), "https://village.example/pain", ExtractConfig())
    assert out.title == "Le pain du village"
    assert out.metadata["author"] == "Jeanne Martin"
    assert out.metadata["date"] == "2024-03-05"
    assert out.metadata["encoding"] == "utf-8"
    assert "filedate" not in out.metadata  # would make output depend on the day it ran


@pytest.mark.parametrize(("data", "content_type", "cfg", "reason"), [
    (b"", None, {}, "empty_input"),
    (b"%PDF-1.7\n\x00\x01binary", None, {}, "not_html"),
    (FRENCH.encode(), "image/png", {}, "not_html"),
    (b"just some plain words, no markup at all", None, {}, "not_html"),
    (FRENCH.encode(), None, {"max_html_bytes": 100}, "too_large"),
    (b"<html><head><title>Nothing</title></head><body><div></div></body></html>", None, {},
     "empty_extraction"),
])
def test_bad_inputs_are_rejected_with_reasons(data, content_type, cfg, reason):
    with pytest.raises(Rejection) as rej:
        extract_html(data, None, ExtractConfig(**cfg), content_type)
    assert rej.value.reason == reason


def test_pathological_page_times_out():
    huge = "<html><body>" + "<div><p>word " * 40000 + "</p></div>" * 40000 + "</body></html>"
    with pytest.raises(Rejection) as rej:
        extract_html(huge.encode(), None, ExtractConfig(timeout_seconds=0.05))
    assert rej.value.reason == "timeout"


def warc_pages() -> list[dict]:
    return [
        {"url": "https://village.example/pain", "body": FRENCH.encode()},
        {"url": "https://village.example/gone", "body": b"<html>gone</html>", "status": 404},
        {"url": "https://village.example/old", "body": b"", "status": 301,
         "headers": [("Location", "https://village.example/pain")]},
        {"url": "https://village.example/logo.png", "body": b"\x89PNG\r\n\x1a\n\x00",
         "content_type": "image/png"},
        {"url": "https://village.example/four", "body": page(PARAGRAPHS[::-1], "Le four").encode()},
    ]


def test_warc_records_become_documents_or_rejections(tmp_path):
    write_warc(tmp_path / "crawl.warc.gz", warc_pages())
    out = extract_unit(plan_extract(tmp_path / "crawl.warc.gz")[0], ExtractConfig())
    assert out.rows_in == 5  # response records only; request and warcinfo are bookkeeping
    kept = out.kept.to_pylist()
    assert [d["url"] for d in kept] == ["https://village.example/pain",
                                        "https://village.example/four"]
    assert all(d["id"].startswith("<urn:uuid:") and d["fetched_at"] for d in kept)
    assert kept[0]["source_path"] == "crawl.warc.gz" and kept[0]["source"] == "crawl"
    reasons = dict(zip(out.rejected.column("url").to_pylist(),
                       out.rejected.column("reject_reason").to_pylist(), strict=True))
    assert reasons == {"https://village.example/gone": "http_error",
                       "https://village.example/old": "redirect",
                       "https://village.example/logo.png": "not_html"}


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_warc_keeps_intact_records_and_names_the_offset(tmp_path, gz):
    path = write_warc(tmp_path / ("c.warc.gz" if gz else "c.warc"), warc_pages(), gzip=gz)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])
    out = extract_unit(plan_extract(path)[0], ExtractConfig())
    assert out.rows_in == out.kept.num_rows + out.rejected.num_rows
    assert out.kept.column("url").to_pylist()[0] == "https://village.example/pain"
    last = out.rejected.to_pylist()[-1]
    assert last["reject_reason"] == "malformed_warc"
    assert "unreadable after byte offset" in last["reject_detail"]
    offset = int(last["reject_detail"].split("byte offset ")[1].split(" ")[0])
    assert 0 < offset < len(data)


def test_garbage_warc_is_an_error_at_offset_zero(tmp_path):
    (tmp_path / "junk.warc").write_bytes(b"this is not a WARC file at all\r\n\r\n" * 10)
    out = extract_unit(plan_extract(tmp_path / "junk.warc")[0], ExtractConfig())
    assert out.kept.num_rows == 0
    assert out.rejected.column("reject_detail")[0].as_py().startswith(
        "junk.warc: unreadable after byte offset 0")


def test_wet_conversion_records_are_text_already(tmp_path):
    path = write_warc(tmp_path / "x.warc.wet.gz", [
        {"url": "https://e.org/a", "body": b"Plain extracted text.", "type": "conversion"},
        {"url": "https://e.org/b", "body": b"  ", "type": "conversion"}])
    out = extract_unit(plan_extract(path)[0], ExtractConfig())
    assert out.kept.column("text").to_pylist() == ["Plain extracted text."]
    assert out.rejected.column("reject_reason").to_pylist() == ["empty_extraction"]


def test_html_folder_keeps_relative_paths(tmp_path):
    site = tmp_path / "site"
    (site / "news").mkdir(parents=True)
    (site / "index.html").write_text(FRENCH)
    (site / "news" / "four.html.gz").write_bytes(gzip.compress(page(PARAGRAPHS, "Four").encode()))
    (site / "news" / "broken.html.gz").write_bytes(b"not gzip")
    (site / "notes.txt").write_text("ignored: not an HTML file")
    report = run_stage(EXTRACT, plan_extract(site), tmp_path / "out", ExtractConfig(),
                       progress=False)
    assert report.ok and (report.rows_in, report.rows_kept) == (3, 2)
    docs = read_shard(tmp_path / "out" / "part-html-00000.arrow").to_pylist()
    assert [d["source_path"] for d in docs] == ["index.html", "news/four.html.gz"]
    assert docs[0]["id"] == "index.html" and "boulanger" in docs[0]["text"]
    assert report.reasons == {"unreadable_file": 1}


def test_jsonl_with_an_html_column(tmp_path):
    path = tmp_path / "pages.jsonl"
    path.write_text("\n".join([json.dumps({"id": "p1", "url": "https://e.org/1", "html": FRENCH}),
                               json.dumps({"id": "p2", "html": None}), "{bad json"]) + "\n")
    out = extract_unit(plan_extract(path)[0], ExtractConfig())
    assert out.kept.column("id").to_pylist() == ["p1"]
    assert out.rejected.column("reject_reason").to_pylist() == ["missing_html", "invalid_json"]


@pytest.mark.parametrize("declared", ["undefined", "punycode", "unicode_escape", "cp037",
                                      "no-such-charset", "utf-16", "utf-16le"])
def test_bogus_or_impossible_charset_labels_fall_back_to_the_bytes(declared):
    for body in (FRENCH, FRENCH + " "):  # even and odd byte counts
        data = body.encode("utf-8")
        out = extract_html(data, None, ExtractConfig(), f"text/html; charset={declared}")
        assert "Le boulanger prépare la pâte" in out.text, declared
        assert out.encoding == "utf-8"


def test_utf16_page_with_bom_is_read():
    out = extract_html(FRENCH.encode("utf-16"), None, ExtractConfig())
    assert "façonne" in out.text and out.encoding == "utf-16"


def test_one_bad_record_does_not_end_the_warc(tmp_path):
    pages = warc_pages()
    path = write_warc(tmp_path / "s.warc", pages, gzip=False)
    data = path.read_bytes().replace(b"HTTP/1.1 404 Not Found", b"HTTP/1.1 4O4 Not Found")
    path.write_bytes(data)
    out = extract_unit(plan_extract(path)[0], ExtractConfig())
    assert out.kept.column("url").to_pylist() == ["https://village.example/pain",
                                                  "https://village.example/four"]
    assert "bad_http_status" in out.rejected.column("reject_reason").to_pylist()


def test_warc_dates_without_a_zone_are_utc(monkeypatch):
    import datetime as dt
    import time

    from curate.web_sources import _warc_date
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert _warc_date("2024-01-01T00:00:00") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_corrupt_gzip_page_is_rejected_alone(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    good = gzip.compress(FRENCH.encode())
    (site / "a.html.gz").write_bytes(good)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    (site / "b.html.gz").write_bytes(bytes(bad))
    out = extract_unit(plan_extract(site)[0], ExtractConfig())
    assert out.kept.column("id").to_pylist() == ["a.html.gz"]
    assert out.rejected.column("reject_reason").to_pylist() == ["unreadable_file"]


def test_non_string_url_in_an_html_table(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "x", "url": 123, "html": FRENCH}) + "\n\n")
    out = extract_unit(plan_extract(path)[0], ExtractConfig())
    assert out.kept.column("url").to_pylist() == ["123"] and out.rows_in == 1
