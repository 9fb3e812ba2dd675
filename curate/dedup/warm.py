"""Load every dedup kernel from numba's cache once, at import.

The process pool's fork server imports this module (``Stage.preload``), so workers are forked
with the compiled kernels already in memory instead of each loading them on its first shard.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curate.dedup import clusters, minhash
from curate.dedup.config import SignatureConfig
from curate.dedup.signatures import compute_signatures


def warm() -> None:
    """Run each kernel on a tiny input (both permutation schemes)."""
    table = pa.table({"id": ["a", "b"], "text": ["one two three four five six", ""],
                      "url": ["http://x.org/a", None]})
    for scheme in ("affine32", "legacy"):
        compute_signatures(table, SignatureConfig(scheme=scheme))
    parent = np.arange(2, dtype=np.int64)
    keys = np.array([1, 1], np.uint64)
    docs = np.array([0, 1], np.int64)
    pairs = np.empty(2, np.int64)
    clusters.link_runs(keys, docs, np.array([2, 2], np.uint8), parent, False, pairs, pairs,
                       pairs, pairs)
    clusters._roots(parent)
    minhash.band_keys(np.zeros((1, 16), np.uint32), 2, 8)


warm()
