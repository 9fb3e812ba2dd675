"""The crawl stage's settings: one pydantic model shared by the library, CLI and recipes."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from curate.config import StageConfig

DEFAULT_USER_AGENT = "sievelm-crawler/0.1 (+https://github.com/sievelm/sievelm; data curation)"


class CrawlConfig(StageConfig):
    """What to crawl, how politely, and where the limits are.

    Politeness knobs are per host; robots.txt can only make the crawl slower or narrower,
    never faster or wider.
    """

    seeds: list[str]
    sitemaps: list[str] = []
    """Sitemap (or sitemap index) URLs; ``Sitemap:`` lines in robots.txt are added to these."""
    allowed_domains: list[str] = []
    """Hosts in scope, subdomains included; default: the hosts of the seeds."""
    include_patterns: list[str] = []
    """Regexes (re.search on the normalised URL); when given, a URL must match one."""
    exclude_patterns: list[str] = []
    max_depth: int = Field(5, ge=0)
    max_pages: int = Field(1000, ge=0)
    """Pages stored in total, counting earlier runs into the same out_dir."""
    concurrency: int = Field(16, ge=1)
    """Requests in flight across all hosts."""
    per_host_concurrency: int = Field(2, ge=1)
    per_host_delay: float = Field(1.0, ge=0)
    """Minimum seconds between request starts to one host; a larger Crawl-delay wins."""
    user_agent: str = DEFAULT_USER_AGENT
    timeout: float = Field(20.0, gt=0)
    retries: int = Field(3, ge=0)
    backoff: float = Field(0.5, ge=0)
    """First retry waits this long, then doubling; Retry-After wins when the server sends it."""
    max_body_bytes: int = Field(5_000_000, gt=0)
    content_types: list[str] = ["text/html", "application/xhtml+xml"]
    max_redirects: int = Field(5, ge=0)
    allow_private_addresses: bool = False
    """Crawl loopback/private/link-local hosts (tests, intranets); off to prevent SSRF."""
    warc_max_bytes: int = Field(100_000_000, gt=0)
    warc_prefix: str = "crawl"

    @field_validator("include_patterns", "exclude_patterns")
    @classmethod
    def _valid_regexes(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regex {pattern!r}: {exc}") from None
        return patterns

    @field_validator("content_types")
    @classmethod
    def _lower_types(cls, types: list[str]) -> list[str]:
        return [t.strip().lower() for t in types]

    @field_validator("warc_prefix")
    @classmethod
    def _safe_prefix(cls, prefix: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", prefix):
            raise ValueError(f"warc_prefix must be a plain file name stem, got {prefix!r}")
        return prefix

    @model_validator(mode="after")
    def _has_start(self) -> CrawlConfig:
        if not self.seeds and not self.sitemaps:
            raise ValueError("give at least one seed URL or sitemap URL")
        return self

    @property
    def product_token(self) -> str:
        """The robots.txt name of this crawler: the user agent up to the first '/' or space."""
        return re.split(r"[/\s]", self.user_agent.strip(), maxsplit=1)[0] or "*"
