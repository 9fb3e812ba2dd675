"""Polite, resumable web crawler that writes standard WARC files.

    from curate.crawl import CrawlConfig, crawl
    report = crawl(CrawlConfig(seeds=["https://example.org/"]), Path("data/crawl"))
    print(report.summary())

Obeys robots.txt (RFC 9309, fractional Crawl-delay included), rate-limits per host, refuses
private addresses unless told otherwise, keeps its frontier in ``out_dir/frontier.sqlite`` so
a killed crawl resumes, and writes ``out_dir/warc/<prefix>-NNNNN.warc.gz`` (request and
response records, gzip per record) that any WARC reader opens.
"""

from curate.crawl.addresses import PrivateAddressError
from curate.crawl.config import DEFAULT_USER_AGENT, CrawlConfig
from curate.crawl.crawler import Crawler, acrawl, crawl
from curate.crawl.frontier import Frontier
from curate.crawl.report import CrawlReport
from curate.crawl.robots import RobotsRules
from curate.crawl.urls import Scope, normalize_url

__all__ = [
    "DEFAULT_USER_AGENT",
    "CrawlConfig",
    "CrawlReport",
    "Crawler",
    "Frontier",
    "PrivateAddressError",
    "RobotsRules",
    "Scope",
    "acrawl",
    "crawl",
    "normalize_url",
]
