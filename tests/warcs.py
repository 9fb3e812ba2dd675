"""Build real WARC files with warcio for tests (the same library other WARC tools use)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

REASONS = {200: "OK", 301: "Moved Permanently", 404: "Not Found", 500: "Internal Server Error"}


def write_warc(path: Path, pages: list[dict], gzip: bool = True) -> Path:
    """pages: dicts with url, body (bytes), optional status, content_type, headers, type."""
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=gzip)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "tests"}))
        for page in pages:
            url, body = page["url"], page["body"]
            if page.get("type") == "conversion":
                writer.write_record(writer.create_warc_record(
                    url, "conversion", payload=BytesIO(body),
                    warc_content_type="text/plain"))
                continue
            request = writer.create_warc_record(
                url, "request", payload=BytesIO(b""),
                http_headers=StatusAndHeaders(f"GET {url} HTTP/1.1", [("Host", "example.org")],
                                              is_http_request=True))
            status = page.get("status", 200)
            headers = [("Content-Type", page.get("content_type", "text/html; charset=utf-8")),
                       *page.get("headers", [])]
            response = writer.create_warc_record(
                url, "response", payload=BytesIO(body),
                http_headers=StatusAndHeaders(f"{status} {REASONS.get(status, 'X')}", headers,
                                              protocol="HTTP/1.1"))
            writer.write_record(request)
            writer.write_record(response)
    return path
