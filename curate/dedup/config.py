"""The dedup stage's settings: one model for the CLI, recipes and the Dagster launchpad."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from curate.config import StageConfig
from curate.dedup.normalize import Normalization

KeepRule = Literal["first", "longest", "score"]


class SignatureConfig(StageConfig):
    """What the per-shard signatures depend on (and so their resume key): shingling,
    permutations, normalisation and the score column. Changing only the keep rule or the
    threshold re-clusters without recomputing signatures."""

    ngram: int = Field(5, ge=1, le=64)
    """Words per shingle."""
    bands: int = Field(14, ge=1)
    rows: int = Field(8, ge=1)
    """Hashes per band; bands x rows hashes are computed. A pair with Jaccard s becomes a
    candidate with probability 1 - (1 - s**rows)**bands (14 x 8: 0.56 at 0.7, 0.92 at 0.8)."""
    seed: int = 1
    """Seed of the permutations (datasketch's ``MinHash(seed=...)``)."""
    scheme: Literal["affine32", "legacy"] = "affine32"
    """datasketch's permutation scheme: affine32 (datasketch >= 2.0) or legacy (< 2.0)."""
    hash_function: Literal["words", "xxh32", "sha1"] = "words"
    """Shingle hash: ``words`` (each word hashed once as the text is normalised, shingles
    combine their words' hashes: one pass, fastest; datasketch equals it with
    ``hashfunc=doc_keys.shingle_hash``), ``xxh32`` of each shingle's bytes (datasketch with
    ``hashfunc=xxhash.xxh32_intdigest``) or ``sha1`` (datasketch's default, in Python, slow)."""
    lowercase: bool = True
    remove_punctuation: bool = True
    normalize_digits: bool = True
    """Every run of digits becomes one 0, so dates and counters do not hide duplicates."""
    strip_accents: bool = False
    score_column: str | None = None
    """Numeric column for ``keep: score`` (for example a quality score)."""

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    @property
    def normalization(self) -> Normalization:
        return Normalization(self.lowercase, self.remove_punctuation, self.normalize_digits,
                             self.strip_accents)


class DedupConfig(SignatureConfig):
    """Exact, URL and MinHash-LSH near-duplicate removal (defaults: FineWeb's 14 x 8 on
    word 5-grams)."""

    exact: bool = True
    """Remove documents whose normalised text is identical to another's."""
    url: bool = True
    """Remove documents whose normalised URL (scheme/host case, default port, fragment, utm_*
    parameters, parameter order) is identical to another's."""
    minhash: bool = True
    """Remove near-duplicates found by MinHash LSH."""
    jaccard_check: bool = False
    """Verify each candidate pair's true Jaccard similarity (from the texts) before linking
    it; removes LSH false positives at the cost of re-reading the texts of candidates."""
    jaccard_threshold: float = Field(0.7, ge=0.0, le=1.0)
    """Minimum true Jaccard similarity of a linked pair when ``jaccard_check`` is on."""
    keep: KeepRule = "first"
    """Which member of a cluster survives: the first in (shard name, row) order, the longest
    text, or the highest ``score_column`` (ties: first)."""
    memory_budget_mb: int = Field(2048, ge=64)
    """RAM the global phases may use; sets the number of on-disk bucket partitions."""
    partitions: int = Field(0, ge=0)
    """Bucket partitions; 0 derives them from ``memory_budget_mb``."""

    @model_validator(mode="after")
    def _check(self) -> DedupConfig:
        if self.keep == "score" and not self.score_column:
            raise ValueError("keep: score needs score_column")
        if not (self.exact or self.url or self.minhash):
            raise ValueError("enable at least one of exact, url, minhash")
        return self

    def signature_config(self) -> SignatureConfig:
        return SignatureConfig(**self.model_dump(include=set(SignatureConfig.model_fields)))
