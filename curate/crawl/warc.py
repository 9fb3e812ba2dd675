"""Rolling, gzip-compressed WARC output that readers never see half-written.

Each file is written under a temporary name (``.warc.gz.open``) and renamed when closed, so
any ``*.warc.gz`` on disk is complete. The frontier records which file holds each URL; a file
left open by a killed run is deleted on restart and its URLs are fetched again.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

__all__ = ["OPEN_SUFFIX", "Exchange", "WarcRoller", "warc_name"]

OPEN_SUFFIX = ".open"
# Headers that describe an encoding the stored payload no longer has (aiohttp removed the
# chunking and the compression); renamed like Common Crawl does so readers do not decode twice.
_DECODED = ("transfer-encoding", "content-encoding")


def warc_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:05d}.warc.gz"


class Exchange:
    """One HTTP request and its response, as they go into a WARC request/response pair.

    The request is always HTTP/1.1 (what aiohttp sends); ``version`` is the response's."""

    __slots__ = ("body", "date", "ip", "reason", "request_headers", "request_target",
                 "response_headers", "status", "url", "version")

    def __init__(self, url: str, date: datetime, ip: str | None, request_target: str,
                 request_headers: Sequence[tuple[str, str]], version: str, status: int,
                 reason: str, response_headers: Sequence[tuple[str, str]], body: bytes) -> None:
        self.url, self.date, self.ip = url, date, ip
        self.request_target, self.request_headers = request_target, request_headers
        self.version, self.status, self.reason = version, status, reason
        self.response_headers, self.body = response_headers, body


def stored_headers(headers: Sequence[tuple[str, str]], body_len: int) -> list[tuple[str, str]]:
    """Response headers as stored: encodings already undone are renamed to X-Crawler-*, and
    Content-Length is made to match the stored payload."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if lower in _DECODED or (lower == "content-length" and value.strip() != str(body_len)):
            out.append((f"X-Crawler-{name}", value))
        elif lower != "content-length":
            out.append((name, value))
    out.append(("Content-Length", str(body_len)))
    return out


class WarcRoller:
    """Writes exchanges to ``<prefix>-NNNNN.warc.gz`` files, starting a new file at
    ``max_bytes``. The callbacks let the frontier commit its bookkeeping around the rename, so
    the frontier and the files never disagree after a crash."""

    def __init__(self, directory: Path, prefix: str, max_bytes: int, info: dict[str, str],
                 on_open: Callable[[str], None] = lambda name: None,
                 before_close: Callable[[str], None] = lambda name: None,
                 after_close: Callable[[str], None] = lambda name: None) -> None:
        self.directory = directory
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.info = info
        self.on_open = on_open
        self.before_close = before_close
        self.after_close = after_close
        self.written: list[Path] = []
        self.bytes_written = 0
        self._file: io.BufferedWriter | None = None
        self._writer: WARCWriter | None = None
        self._name: str | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def next_index(self) -> int:
        pattern = re.compile(re.escape(self.prefix) + r"-(\d{5,})\.warc\.gz(?:\.open)?$")
        found = [int(m[1]) for p in self.directory.iterdir() if (m := pattern.match(p.name))]
        return max(found, default=-1) + 1

    @property
    def current(self) -> str | None:
        """Final name of the file being written, or None between files."""
        return self._name

    def _open(self) -> str:
        name = warc_name(self.prefix, self.next_index())
        self.on_open(name)
        self._file = open(self.directory / (name + OPEN_SUFFIX), "wb")  # noqa: SIM115
        self._writer = WARCWriter(self._file, gzip=True, warc_version="1.1")
        self._writer.write_record(self._writer.create_warcinfo_record(name, self.info))
        self._name = name
        return name

    def write(self, exchange: Exchange) -> str:
        """Append a request and a response record; returns the file's final name."""
        name = self._name or self._open()
        writer = self._writer
        assert writer is not None and self._file is not None
        date = datetime_to_iso_date(exchange.date.astimezone(UTC).replace(tzinfo=None),
                                    use_micros=True)
        request_id, response_id = f"<urn:uuid:{uuid.uuid4()}>", f"<urn:uuid:{uuid.uuid4()}>"

        req_http = StatusAndHeaders(f"GET {exchange.request_target} HTTP/1.1",
                                    list(exchange.request_headers), is_http_request=True)
        request = writer.create_warc_record(
            exchange.url, "request", payload=io.BytesIO(b""), length=0, http_headers=req_http,
            warc_headers_dict={"WARC-Record-ID": request_id, "WARC-Date": date,
                               "WARC-Concurrent-To": response_id})

        resp_http = StatusAndHeaders(f"{exchange.status} {exchange.reason}".strip(),
                                     stored_headers(exchange.response_headers,
                                                    len(exchange.body)),
                                     protocol=exchange.version)
        warc_headers = {"WARC-Record-ID": response_id, "WARC-Date": date,
                        "WARC-Concurrent-To": request_id}
        if exchange.ip:
            warc_headers["WARC-IP-Address"] = exchange.ip
        response = writer.create_warc_record(
            exchange.url, "response", payload=io.BytesIO(exchange.body),
            length=len(exchange.body), http_headers=resp_http, warc_headers_dict=warc_headers)

        writer.write_record(request)
        writer.write_record(response)
        return name

    def roll_if_full(self) -> None:
        """Close the current file once it reached ``max_bytes``; the caller records what it
        wrote first, so the frontier commit before the rename includes it."""
        if self._file is not None and self._file.tell() >= self.max_bytes:
            self.close()

    def close(self) -> None:
        """Finish the current file: flush, fsync, let the frontier commit, rename."""
        if self._file is None or self._name is None:
            return
        name, handle = self._name, self._file
        self._file, self._writer, self._name = None, None, None
        handle.flush()
        os.fsync(handle.fileno())
        size = handle.tell()
        handle.close()
        self.before_close(name)
        final = self.directory / name
        os.replace(self.directory / (name + OPEN_SUFFIX), final)
        _fsync_dir(self.directory)
        self.after_close(name)
        self.written.append(final)
        self.bytes_written += size


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
