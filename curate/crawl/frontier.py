"""The crawl frontier, persisted in SQLite so a killed crawl resumes where it stopped.

Only the rows being worked on live in Python; the queue itself stays on disk, so a frontier
of millions of URLs costs disk, not memory. The normalised URL is the primary key, which is
what makes every URL fetched at most once across runs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BLOCKED", "DONE", "FAILED", "IN_FLIGHT", "PAGE", "QUEUED", "SITEMAP", "SKIPPED",
           "STATUSES", "Frontier", "Row"]

QUEUED, IN_FLIGHT, DONE, FAILED, BLOCKED, SKIPPED = (
    "queued", "in-flight", "done", "failed", "blocked", "skipped")
STATUSES = (QUEUED, IN_FLIGHT, DONE, FAILED, BLOCKED, SKIPPED)
PAGE, SITEMAP = "page", "sitemap"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frontier (
    id          INTEGER PRIMARY KEY,        -- discovery order
    url         TEXT NOT NULL UNIQUE,       -- normalised
    host        TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'page',
    depth       INTEGER NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    error       TEXT,                       -- kind, e.g. http_404, robots_disallowed
    detail      TEXT,                       -- human-readable message
    warc_file   TEXT,                       -- file holding this URL's records
    updated     REAL
);
CREATE INDEX IF NOT EXISTS frontier_claim ON frontier(status, host, depth, id);
CREATE INDEX IF NOT EXISTS frontier_warc ON frontier(warc_file) WHERE warc_file IS NOT NULL;
CREATE TABLE IF NOT EXISTS warc_files (name TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS robots (
    origin TEXT PRIMARY KEY, fetched REAL NOT NULL, http_status INTEGER, body BLOB);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


@dataclass(frozen=True)
class Row:
    """A claimed frontier entry."""

    id: int
    url: str
    host: str
    kind: str
    depth: int


class Frontier:
    """SQLite-backed URL queue with per-URL status; commits are batched for speed."""

    def __init__(self, path: Path, commit_every: float = 0.5) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()
        self._commit_every = commit_every
        self._last_commit = time.monotonic()

    # --- queue ----------------------------------------------------------------------------

    def add(self, items: Iterable[tuple[str, str, int]], kind: str = PAGE,
            status: str = QUEUED, error: str | None = None) -> int:
        """Insert (url, host, depth) rows that are not known yet; returns how many were new."""
        now = time.time()
        cur = self._db.executemany(
            "INSERT OR IGNORE INTO frontier(url, host, kind, depth, status, error, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((url, host, kind, depth, status, error, now) for url, host, depth in items))
        return max(cur.rowcount, 0)

    def claim_next(self, host: str) -> Row | None:
        """Take the shallowest, oldest queued URL of ``host`` (breadth-first per host)."""
        found = self._db.execute(
            "SELECT id, url, host, kind, depth FROM frontier WHERE status = ? AND host = ? "
            "ORDER BY depth, id LIMIT 1", (QUEUED, host)).fetchone()
        if found is None:
            return None
        self._mark_in_flight(found[0])
        return Row(*found)

    def claim_url(self, url: str, host: str, depth: int, kind: str = PAGE) -> Row | None:
        """Claim a specific URL (a redirect target) unless it is already taken or finished."""
        self.add([(url, host, depth)], kind=kind)
        found = self._db.execute(
            "SELECT id, url, host, kind, depth FROM frontier WHERE url = ? AND status = ?",
            (url, QUEUED)).fetchone()
        if found is None:
            return None
        self._mark_in_flight(found[0])
        return Row(*found)

    def _mark_in_flight(self, row_id: int) -> None:
        self._db.execute("UPDATE frontier SET status = ?, attempts = attempts + 1, updated = ? "
                         "WHERE id = ?", (IN_FLIGHT, time.time(), row_id))

    def finish(self, row_id: int, status: str, *, http_status: int | None = None,
               error: str | None = None, detail: str | None = None,
               warc_file: str | None = None, retries: int = 0) -> None:
        """Record the outcome of a claimed URL."""
        self._db.execute(
            "UPDATE frontier SET status = ?, http_status = ?, error = ?, detail = ?, "
            "warc_file = ?, attempts = attempts + ?, updated = ? WHERE id = ?",
            (status, http_status, error, detail, warc_file, retries, time.time(), row_id))
        self.maybe_commit()

    def pending_hosts(self) -> list[str]:
        return [h for (h,) in self._db.execute(
            "SELECT DISTINCT host FROM frontier WHERE status = ?", (QUEUED,))]

    def recover(self) -> int:
        """Rows left in flight by a killed run go back to the queue."""
        cur = self._db.execute("UPDATE frontier SET status = ? WHERE status = ?",
                               (QUEUED, IN_FLIGHT))
        self._db.commit()
        return cur.rowcount

    def requeue(self, status: str, errors: Iterable[str]) -> int:
        """Give rows that ended with one of ``errors`` another chance (scope changed, ...)."""
        errors = list(errors)
        marks = ",".join("?" * len(errors))
        cur = self._db.execute(
            f"UPDATE frontier SET status = ?, error = NULL, detail = NULL "
            f"WHERE status = ? AND error IN ({marks})", (QUEUED, status, *errors))
        self._db.commit()
        return cur.rowcount

    # --- statistics -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per status."""
        found = dict(self._db.execute("SELECT status, count(*) FROM frontier GROUP BY status"))
        return {s: found.get(s, 0) for s in STATUSES}

    def stored_pages(self) -> int:
        """HTML pages stored so far, over all runs: what ``max_pages`` counts."""
        return self._db.execute(
            "SELECT count(*) FROM frontier WHERE status = ? AND kind = ? "
            "AND http_status BETWEEN 200 AND 299", (DONE, PAGE)).fetchone()[0]

    def status_of(self, url: str) -> tuple[str, str | None] | None:
        found = self._db.execute("SELECT status, error FROM frontier WHERE url = ?",
                                 (url,)).fetchone()
        return None if found is None else (found[0], found[1])

    # --- WARC bookkeeping -----------------------------------------------------------------

    def warc_opened(self, name: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO warc_files(name, state) VALUES (?, 'open')",
                         (name,))
        self._db.commit()

    def warc_closed(self, name: str) -> None:
        self._db.execute("UPDATE warc_files SET state = 'closed' WHERE name = ?", (name,))
        self._db.commit()

    def open_warcs(self) -> list[str]:
        """WARC files a killed run never finished."""
        return [n for (n,) in self._db.execute(
            "SELECT name FROM warc_files WHERE state = 'open' ORDER BY name")]

    def discard_warc(self, name: str) -> int:
        """Requeue every URL whose records were in an unfinished WARC and forget the file."""
        cur = self._db.execute(
            "UPDATE frontier SET status = ?, http_status = NULL, error = NULL, detail = NULL, "
            "warc_file = NULL WHERE warc_file = ?", (QUEUED, name))
        self._db.execute("DELETE FROM warc_files WHERE name = ?", (name,))
        self._db.commit()
        return cur.rowcount

    # --- robots.txt cache and metadata ----------------------------------------------------

    def robots_get(self, origin: str, max_age: float) -> tuple[int, bytes] | None:
        found = self._db.execute("SELECT fetched, http_status, body FROM robots WHERE origin = ?",
                                 (origin,)).fetchone()
        if found is None or time.time() - found[0] > max_age:
            return None
        return found[1], found[2] or b""

    def robots_put(self, origin: str, http_status: int, body: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO robots(origin, fetched, http_status, body) "
                         "VALUES (?, ?, ?, ?)", (origin, time.time(), http_status, body))

    def get_meta(self, key: str) -> str | None:
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if found is None else found[0]

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- transactions ---------------------------------------------------------------------

    def maybe_commit(self) -> None:
        """Commit at most every ``commit_every`` seconds: one fsync per URL would be the
        bottleneck, and a lost uncommitted row is simply fetched again."""
        if time.monotonic() - self._last_commit >= self._commit_every:
            self.commit()

    def commit(self) -> None:
        self._db.commit()
        self._last_commit = time.monotonic()

    def close(self) -> None:
        self._db.commit()
        self._db.close()
