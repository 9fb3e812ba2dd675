"""The labelled near-duplicate pairs behind the dedup quality table, and LSH on them."""

from __future__ import annotations

import numpy as np
import pytest

from bench.dedup_pairs import KINDS, evaluate, jaccard, make_pairs, score, shingle_set


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(300, seed=1)


def test_make_pairs_is_deterministic(pairs) -> None:
    assert make_pairs(300, seed=1) == pairs
    assert make_pairs(40, seed=2) != pairs[:40]


def test_pairs_span_the_jaccard_range(pairs) -> None:
    jac = np.array([p.jaccard for p in pairs])
    assert np.all(np.histogram(jac, bins=10, range=(0.0, 1.0))[0] > 0)  # every decile
    assert np.sum(jac >= 0.5) >= 150 and np.sum(jac == 1.0) >= 10
    assert {p.kind for p in pairs} == set(KINDS)
    assert all(p.jaccard < 0.1 for p in pairs if p.kind == "unrelated")
    assert all(p.jaccard == 1.0 for p in pairs if p.kind == "format")
    for p in pairs[:20]:  # the labels are the exact Jaccard of the shingle sets
        assert p.jaccard == jaccard(shingle_set(p.a), shingle_set(p.b))


def test_lsh_recall_and_agreement_with_datasketch(pairs) -> None:
    jac, (ours, checked, ds_sha1, ds_ours) = score(pairs)
    high = jac >= 0.9
    assert high.sum() >= 30
    assert ours.predicted[high].mean() >= 0.95
    # the exact check removes every false positive and nothing else
    assert np.array_equal(checked.predicted, ours.predicted & (jac >= 0.7))
    # same hashes and bands as datasketch, so the same decisions
    assert np.mean(ours.predicted == ds_ours.predicted) >= 0.99
    # with datasketch's own (independent) hashes, pairs near the threshold are coin flips for
    # both, so agreement is statistical: about 88% on these pairs
    assert np.mean(ours.predicted == ds_sha1.predicted) >= 0.8


def test_evaluate_renders_a_table(pairs) -> None:
    table = evaluate(pairs[:60])
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 6 and "precision" in rows[0] and "theory" in rows[-1]
