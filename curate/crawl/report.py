"""What a crawl did, for the CLI summary, Dagster metadata and tests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from curate.humanize import human_bytes

__all__ = ["CrawlReport", "human_bytes"]


@dataclass
class CrawlReport:
    """Totals of one ``crawl()`` run; ``pages_total`` also counts earlier runs."""

    out_dir: Path
    pages: int = 0
    """HTML pages stored in this run."""
    pages_total: int = 0
    """HTML pages stored in out_dir over all runs (what max_pages limits)."""
    bytes: int = 0
    """Payload bytes of the pages stored in this run."""
    requests: int = 0
    """HTTP requests sent, robots.txt, sitemaps, redirects and retries included."""
    redirects: int = 0
    retries: int = 0
    resumed: int = 0
    """Rows a killed earlier run left in flight, put back in the queue."""
    errors: Counter[str] = field(default_factory=Counter)
    """Why URLs were not stored: http_404, timeout, too_large, not_html, robots_disallowed,
    out_of_scope, private_address, ..."""
    seconds: float = 0.0
    warc_files: list[Path] = field(default_factory=list)
    warc_bytes: int = 0
    frontier: dict[str, int] = field(default_factory=dict)
    """Frontier rows per status at the end of the run."""
    stopped: str = "frontier exhausted"

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> str:
        """One screen: what was stored, what was not and why, how fast, where it went."""
        secs = max(self.seconds, 1e-9)
        lines = [
            f"stage crawl -> {self.out_dir}",
            f"  pages    {self.pages:,} stored this run ({self.pages_total:,} in total), "
            f"{human_bytes(self.bytes)}; stopped: {self.stopped}",
            f"  requests {self.requests:,}  redirects {self.redirects:,}  "
            f"retries {self.retries:,}" + (f"  resumed {self.resumed:,}" if self.resumed else ""),
            f"  not stored {self.error_count:,}",
        ]
        for kind, count in self.errors.most_common():
            lines.append(f"             {count:>10,}  {kind}")
        queued = self.frontier.get("queued", 0)
        lines.append(f"  frontier {', '.join(f'{k} {v:,}' for k, v in self.frontier.items() if v)}"
                     + ("; re-run to continue" if queued else ""))
        lines.append(f"  time     {self.seconds:.2f} s  ({self.pages / secs:,.1f} pages/s, "
                     f"{human_bytes(self.bytes / secs)}/s)")
        names = [p.name for p in self.warc_files]
        files = ", ".join(names[:3] + (["..."] if len(names) > 4 else []) + names[3:][-1:])
        lines.append(f"  warc     {len(self.warc_files)} file(s), "
                     f"{human_bytes(self.warc_bytes)}" + (f": {files}" if files else ""))
        if self.errors.get("private_address"):
            lines.append("  note     private/loopback addresses were refused; set "
                         "allow_private_addresses=true to crawl them")
        return "\n".join(lines)
