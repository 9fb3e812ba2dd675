"""robots.txt (RFC 9309): groups, longest-match Allow/Disallow with ``*`` and ``$``, and a
fractional Crawl-delay.

Written here rather than taken from ``urllib.robotparser`` because that parser uses the
first matching rule instead of the longest, knows no wildcards, and drops a Crawl-delay like
0.05 (it only accepts integers).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from curate.crawl.urls import PATH_SAFE, normalize_pct

__all__ = ["MAX_ROBOTS_BYTES", "RobotsRules"]

MAX_ROBOTS_BYTES = 512 * 1024
"""RFC 9309 asks crawlers to parse at least 500 KiB; anything after that is ignored."""


@dataclass(frozen=True)
class _Rule:
    allow: bool
    pattern: str
    regex: re.Pattern[str]


def _compile(allow: bool, pattern: str) -> _Rule:
    """A path pattern as a regex: ``*`` is any run of characters, a final ``$`` anchors."""
    anchored = pattern.endswith("$")
    body = normalize_pct(pattern[:-1] if anchored else pattern, PATH_SAFE)
    if not body.startswith(("/", "*")):
        body = "/" + body
    regex = ".*".join(re.escape(part) for part in body.split("*")) + ("$" if anchored else "")
    return _Rule(allow, body + ("$" if anchored else ""), re.compile(regex))


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)
    rules: list[tuple[bool, str]] = field(default_factory=list)
    crawl_delay: float | None = None


@dataclass(frozen=True)
class RobotsRules:
    """The rules of one robots.txt that apply to one product token."""

    rules: tuple[_Rule, ...] = ()
    crawl_delay: float | None = None
    sitemaps: tuple[str, ...] = ()
    disallow_all: bool = False
    """Set when robots.txt could not be fetched (5xx, network error): assume nothing is
    allowed, as RFC 9309 requires."""

    @classmethod
    def allow_everything(cls) -> RobotsRules:
        """robots.txt is missing (4xx): everything may be crawled."""
        return cls()

    @classmethod
    def unreachable(cls) -> RobotsRules:
        return cls(disallow_all=True)

    @classmethod
    def parse(cls, text: str | bytes, product_token: str) -> RobotsRules:
        """Rules for ``product_token`` (case-insensitive), else the ``*`` group(s)."""
        if isinstance(text, bytes):
            text = text[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
        groups: list[_Group] = []
        sitemaps: list[str] = []
        current: _Group | None = None
        last_was_agent = False
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if ":" not in line:
                continue
            key, value = (s.strip() for s in line.split(":", 1))
            key = key.lower().replace("_", "-")
            if key in ("user-agent", "useragent"):
                if current is None or not last_was_agent:
                    current = _Group()
                    groups.append(current)
                current.agents.append(value.lower())
                last_was_agent = True
                continue
            last_was_agent = False
            if key == "sitemap":
                if value:
                    sitemaps.append(value)
            elif current is None:
                continue
            elif key in ("allow", "disallow"):
                if value:  # an empty Disallow allows everything, i.e. adds no rule
                    current.rules.append((key == "allow", value))
            elif key == "crawl-delay":
                try:
                    delay = float(value)
                except ValueError:
                    continue
                if math.isfinite(delay) and delay >= 0:
                    current.crawl_delay = delay

        token = product_token.lower()
        chosen = [g for g in groups if token in g.agents]
        if not chosen:
            chosen = [g for g in groups if "*" in g.agents]
        rules = [_compile(allow, pattern) for group in chosen for allow, pattern in group.rules]
        delays = [g.crawl_delay for g in chosen if g.crawl_delay is not None]
        return cls(tuple(rules), max(delays) if delays else None, tuple(sitemaps))

    def allowed(self, url: str) -> bool:
        """Longest matching pattern wins; on a tie Allow wins; /robots.txt is always allowed."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if parts.path == "/robots.txt":
            return True
        if self.disallow_all:
            return False
        best: tuple[int, bool] | None = None
        for rule in self.rules:
            if rule.regex.match(path):
                key = (len(rule.pattern), rule.allow)
                if best is None or key > best:
                    best = key
        return True if best is None else best[1]
