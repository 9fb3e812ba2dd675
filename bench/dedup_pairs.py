"""Labelled near-duplicate pairs, to measure what MinHash LSH finds and misses.

Speed numbers say nothing about whether the dedup stage removes the right documents, so this
module builds pairs of documents with a known edit (word substitutions, sentences inserted or
deleted, boilerplate added or changed, paragraphs reordered, formatting only, unrelated
documents, documents sharing only a page template) and labels each with its TRUE Jaccard
similarity: that of the word 5-gram shingle sets of the normalised texts, computed exactly
with the same normalisation and ``shingles`` the stage hashes. Edit strengths are drawn so
that true Jaccard spreads over 0..1, with most pairs in 0.5..1 where the LSH threshold sits.

``evaluate`` scores "predicted duplicate" against "true Jaccard >= threshold" for our LSH
(candidate iff any band key is equal), our LSH plus an exact Jaccard check, and datasketch's
``MinHashLSH`` (its default SHA-1 hash, and our shingle hash, which must agree bit for bit).

The prose is English-looking: sentences of words drawn with their frequencies in the
project's demo corpus (``curate.demo_text``), mixed with real sentences from that corpus with
their slots filled, so that unrelated documents share a few phrases as real ones do.

``python -m bench.dedup_pairs [--pairs N]`` prints the table.
"""

from __future__ import annotations

import argparse
import functools
import random
import re
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.dedup.doc_keys import doc_keys, shingle_hash
from curate.dedup.minhash import band_keys, shingles
from curate.dedup.normalize import normalize, normalize_one
from curate.demo_text import EN_SLOTS, EN_TOPICS

NGRAM = 5
NUM_PERM = 112
BUCKETS = ((0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0))
KINDS = {  # kind -> share of the pairs
    "substitute": 0.22, "sentences": 0.18, "boilerplate": 0.14, "reorder": 0.10,
    "format": 0.05, "template": 0.16, "unrelated": 0.15,
}
_MONTHS = ("January", "March", "May", "June", "August", "September", "October", "December")
_SITES = ("The Valley Courier", "Northgate Weekly", "Harbour Lights Online", "The Fen Ledger",
          "Riverside Notes", "Ashcombe Gazette", "Open Field Journal", "The Lantern Post")
_NAV = ("Home", "News", "About us", "Contact", "Subscribe", "Events", "Archive", "Shop",
        "Log in", "Register", "Search", "Newsletter", "Advertise", "Jobs", "Help")
_FOOTER = (
    "Copyright {year} {site}. All rights reserved.",
    "Privacy policy | Terms of use | Cookie settings | Accessibility statement",
    "We use cookies to improve your experience on our website. By continuing to browse you "
    "agree to our use of cookies.",
    "Sign up to our newsletter and get the latest stories delivered to your inbox every week.",
    "Share this article: Facebook, Twitter, LinkedIn, WhatsApp, Email.",
    "{site} is published by {site} Media Ltd, registered in England and Wales, company number "
    "{number}.",
    "Follow us on social media for daily updates, photographs and event listings.",
    "Related articles: {title}; {title}; {title}.",
    "Comments are moderated and may take up to {number} hours to appear.",
)
_TEMPLATE = (
    "Posted by {name} on {month} {day}, {year} in {topic}.",
    "Product details: free delivery on orders over {number} pounds, returns accepted within "
    "{day} days, secure checkout with all major cards.",
    "Leave a comment below. Your email address will not be published. Required fields are "
    "marked.",
    "About the author: {name} writes about {topic} and lives near {town}.",
    "Opening hours: Monday to Friday nine until five, Saturday ten until four, closed on "
    "Sundays and bank holidays.",
    "Did you find this page useful? Yes or no. Tell us how we can improve it.",
    "Price includes VAT. Stock levels are updated every {day} minutes. Reviews from verified "
    "buyers only.",
    "Tags: {topic}, {town}, community, local news, {month}.",
)


@dataclass(frozen=True)
class Pair:
    """Two documents, how the second was made from the first, and their true Jaccard."""

    a: str
    b: str
    kind: str
    jaccard: float


class _Slots(dict):
    """Fills any ``{slot}`` of the demo sentences and templates with a random value."""

    def __init__(self, rng: random.Random):
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        rng = self.rng
        if key in EN_SLOTS:
            return rng.choice(EN_SLOTS[key])
        return {"month": lambda: rng.choice(_MONTHS), "site": lambda: rng.choice(_SITES),
                "day": lambda: str(rng.randint(1, 28)),
                "year": lambda: str(rng.randint(1850, 2024)),
                "old_year": lambda: str(rng.randint(1150, 1600)),
                "recent_year": lambda: str(rng.randint(1985, 2015)),
                "number": lambda: str(rng.randint(2, 99999)),
                "title": lambda: sentence(rng, 4, 8).rstrip(".?"),
                "topic": lambda: rng.choice(EN_TOPICS).name,
                }.get(key, lambda: str(rng.randint(3, 12)))()


@functools.cache
def vocabulary() -> tuple[tuple[str, ...], tuple[float, ...]]:
    """(words, cumulative weights): every word of the English demo corpus, weighted by its
    frequency there (plus one), so generated text has a realistic Zipf-like word mix."""
    counts: Counter[str] = Counter()
    for topic in EN_TOPICS:
        for cluster in topic.clusters:
            for s in cluster:
                counts.update(re.findall(r"[a-z]+(?:'[a-z]+)?", re.sub(r"\{\w+\}", "", s.lower())))
    words = tuple(sorted(counts))
    cum = tuple(np.cumsum([counts[w] + 1.0 for w in words]).tolist())
    return words, cum


@functools.cache
def demo_sentences() -> tuple[str, ...]:
    return tuple(s for t in EN_TOPICS for c in t.clusters for s in c)


def sentence(rng: random.Random, lo: int = 6, hi: int = 24) -> str:
    """One synthetic sentence: frequency-weighted words, an occasional comma or number."""
    words, cum = vocabulary()
    out = rng.choices(words, cum_weights=cum, k=rng.randint(lo, hi))
    for i in range(1, len(out) - 1):
        r = rng.random()
        if r < 0.06:
            out[i] += ","
        elif r < 0.075:
            out[i] = str(rng.choice((rng.randint(2, 60), rng.randint(1850, 2024))))
    return out[0].capitalize() + " " + " ".join(out[1:]) + ("?" if rng.random() < 0.04 else ".")


def any_sentence(rng: random.Random, slots: _Slots) -> str:
    """A real demo-corpus sentence (one in five) or a synthetic one."""
    if rng.random() < 0.2:
        return rng.choice(demo_sentences()).format_map(slots)
    return sentence(rng)


def document(rng: random.Random, n_words: int) -> list[list[str]]:
    """Paragraphs of 2-6 sentences, about ``n_words`` words in all."""
    slots = _Slots(rng)
    paragraphs: list[list[str]] = []
    total = 0
    while total < n_words:
        para = [any_sentence(rng, slots) for _ in range(rng.randint(2, 6))]
        total += sum(s.count(" ") + 1 for s in para)
        paragraphs.append(para)
    return paragraphs


def render(paragraphs: list[list[str]]) -> str:
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def boilerplate(rng: random.Random, n_words: int, site: str | None = None) -> str:
    """A navigation bar and footer lines of about ``n_words`` words (at least the nav)."""
    slots = _Slots(rng)
    if site:
        slots["site"] = site
    nav = " | ".join(rng.sample(_NAV, rng.randint(4, 8)))
    lines = [nav]
    total = nav.count(" ") + 1
    while total < n_words:
        line = rng.choice(_FOOTER).format_map(slots)
        lines.append(line)
        total += line.count(" ") + 1
    return "\n".join(lines)


def shingle_set(text: str) -> set[bytes]:
    """The reference shingle set of one text (pure Python normalisation)."""
    return set(shingles(normalize_one(text), NGRAM))


def shingle_lists(texts: list[str]) -> list[list[bytes]]:
    """The shingles of many texts, normalised by the compiled kernel (the same result)."""
    norm = normalize(pa.array(texts, pa.large_string()))
    return [shingles(t, NGRAM) for t in norm.to_pylist()]


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    """Exact Jaccard similarity of two shingle sets (two empty sets are identical)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _target(rng: random.Random) -> float:
    """Jaccard to aim for: a quarter below 0.5, the rest spread evenly over 0.5..1."""
    return rng.uniform(0.0, 0.5) if rng.random() < 0.25 else rng.uniform(0.5, 1.0)


def _substitute(rng: random.Random, paragraphs: list[list[str]], t: float) -> list[list[str]]:
    """Replace each word with probability p; a shingle survives if its 5 words do, so
    J ~ q**5 / (2 - q**5) with q = 1 - p: solve for the target."""
    words, cum = vocabulary()
    p = 1.0 - (2 * t / (1 + t)) ** (1 / NGRAM)
    out = []
    for para in paragraphs:
        new = []
        for s in para:
            toks = s.split(" ")
            for i in range(len(toks)):
                if rng.random() < p:
                    toks[i] = rng.choices(words, cum_weights=cum)[0]
            new.append(" ".join(toks))
        out.append(new)
    return out


def _sentences(rng: random.Random, paragraphs: list[list[str]], t: float) -> list[list[str]]:
    """Delete a share of the sentences, insert new ones, or both (J ~ kept / (1 + added))."""
    slots = _Slots(rng)
    mode = rng.choice(("delete", "insert", "both"))
    keep = {"delete": t, "insert": 1.0, "both": t ** 0.5}[mode]
    add = {"delete": 0.0, "insert": min(1 / max(t, 0.25) - 1, 3.0),
           "both": 1 / max(t, 0.0625) ** 0.5 - 1}[mode]
    out = []
    for para in paragraphs:
        new = [s for s in para if rng.random() < keep]
        extra = len(para) * add
        n_extra = int(extra) + (rng.random() < extra - int(extra))
        for _ in range(n_extra):
            new.insert(rng.randint(0, len(new)), any_sentence(rng, slots))
        out.append(new)
    return out


def _word_count(paragraphs: list[list[str]]) -> int:
    return sum(s.count(" ") + 1 for p in paragraphs for s in p)


def _pair(rng: random.Random, kind: str) -> tuple[str, str]:
    n_words = rng.randint(150, 650)  # about 1-4 KB of text
    if kind == "unrelated":
        return render(document(rng, n_words)), render(document(rng, n_words))
    if kind == "template":
        # the same site chrome and page template around two different bodies: J = T / (T + 2S)
        t = rng.uniform(0.05, 0.85)
        slots = _Slots(rng)
        site = rng.choice(_SITES)
        head = boilerplate(rng, rng.randint(30, 120), site)
        tmpl = " ".join(rng.choice(_TEMPLATE).format_map(slots) for _ in range(rng.randint(2, 5)))
        foot = boilerplate(rng, rng.randint(30, 120), site)
        shared = (head + tmpl + foot).count(" ") + 1
        body = max(5, int(shared * (1 - t) / (2 * t)))
        return (f"{head}\n\n{render(document(rng, body))}\n\n{tmpl}\n\n{foot}",
                f"{head}\n\n{render(document(rng, body))}\n\n{tmpl}\n\n{foot}")
    t = _target(rng)
    doc = document(rng, n_words)
    a = render(doc)
    if kind == "substitute":
        return a, render(_substitute(rng, doc, t))
    if kind == "sentences":
        return a, render(_sentences(rng, doc, t))
    if kind == "reorder":
        shuffled = doc[:]
        while len(shuffled) > 1 and shuffled == doc:
            rng.shuffle(shuffled)
        # reordering alone keeps J near 1; light substitutions spread it downwards
        return a, render(_substitute(rng, shuffled, max(t, 0.6)))
    if kind == "format":
        b = re.sub(r"\d+", lambda m: str(rng.randint(0, 9999)), a)
        b = re.sub(r"([.,?]) ", lambda m: rng.choice((m[1] + " ", m[1] + "  ", " - ", "; ")), b)
        return a, (b.upper() if rng.random() < 0.3 else b).replace("\n\n", "\n \n")
    if kind == "boilerplate":
        # b = a with chrome added (J ~ S / (S + L)) or with different chrome on both
        t = max(t, 0.3)
        body = _word_count(doc)
        if rng.random() < 0.5:
            size = max(8, int(body * (1 - t) / t))
            head_words = rng.randint(0, size)
            head, foot = boilerplate(rng, head_words), boilerplate(rng, size - head_words)
            return a, f"{head}\n\n{a}\n\n{foot}"
        size = max(8, int(body * (1 - t) / (2 * t)))
        return (f"{boilerplate(rng, size // 2)}\n\n{a}\n\n{boilerplate(rng, size - size // 2)}",
                f"{boilerplate(rng, size // 2)}\n\n{a}\n\n{boilerplate(rng, size - size // 2)}")
    raise ValueError(f"unknown pair kind {kind!r}")


def make_pairs(n_pairs: int, seed: int = 0) -> list[Pair]:
    """``n_pairs`` labelled pairs, the same for the same seed, kinds in ``KINDS`` shares."""
    rng = random.Random(f"bench.dedup_pairs:{seed}")
    kinds = list(KINDS)
    counts = [int(n_pairs * KINDS[k]) for k in kinds]
    counts[0] += n_pairs - sum(counts)
    plan = [k for k, c in zip(kinds, counts, strict=True) for _ in range(c)]
    rng.shuffle(plan)
    raw = [(*_pair(rng, kind), kind) for kind in plan]
    # Exact Jaccard of the reference shingles. The texts are normalised by the compiled
    # ``normalize`` (equal to ``normalize_one``, tests check the labels against it; the pure
    # Python reference would take most of the run).
    sets = [set(sh) for sh in shingle_lists([t for a, b, _ in raw for t in (a, b)])]
    return [Pair(a, b, kind, jaccard(sets[2 * i], sets[2 * i + 1]))
            for i, (a, b, kind) in enumerate(raw)]


@dataclass(frozen=True)
class Score:
    """Predicted-duplicate quality of one method over a set of pairs."""

    method: str
    predicted: np.ndarray  # bool per pair

    def counts(self, truth: np.ndarray) -> tuple[int, int, int]:
        tp = int(np.sum(self.predicted & truth))
        return tp, int(np.sum(self.predicted & ~truth)), int(np.sum(~self.predicted & truth))

    def prf(self, truth: np.ndarray) -> tuple[float, float, float]:
        tp, fp, fn = self.counts(truth)
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _lsh_ours(pairs: list[Pair], bands: int, rows: int) -> np.ndarray:
    texts = pa.array([t for p in pairs for t in (p.a, p.b)], pa.large_string())
    sig, _, _, _ = doc_keys(texts, num_perm=NUM_PERM, ngram=NGRAM, seed=1)  # the stage's path
    keys = band_keys(sig, bands, rows)
    return np.any(keys[0::2] == keys[1::2], axis=1)


def _lsh_datasketch(pairs: list[Pair], bands: int, rows: int, hashfunc: str) -> np.ndarray:
    from datasketch import MinHash, MinHashLSH

    kwargs = {"hashfunc": shingle_hash} if hashfunc == "ours" else {}
    out = np.zeros(len(pairs), dtype=bool)
    sh = shingle_lists([t for p in pairs for t in (p.a, p.b)])
    for i in range(len(pairs)):
        lsh = MinHashLSH(num_perm=NUM_PERM, params=(bands, rows))
        mins = []
        for doc in sh[2 * i:2 * i + 2]:
            m = MinHash(num_perm=NUM_PERM, seed=1, **kwargs)
            m.update_batch(doc)
            mins.append(m)
        lsh.insert("a", mins[0])
        out[i] = bool(lsh.query(mins[1]))
    return out


def score(pairs: list[Pair], threshold: float = 0.7, bands: int = 14, rows: int = 8,
          ) -> tuple[np.ndarray, list[Score]]:
    """(true Jaccard per pair, the methods' predictions): ours, ours + exact check,
    datasketch with its default SHA-1 hash and with our shingle hash."""
    jac = np.array([p.jaccard for p in pairs])
    ours = _lsh_ours(pairs, bands, rows)
    return jac, [
        Score(f"ours: LSH {bands}x{rows}, any band equal", ours),
        Score(f"ours: LSH + exact Jaccard >= {threshold}", ours & (jac >= threshold)),
        Score(f"datasketch MinHashLSH params=({bands}, {rows}), default sha1",
              _lsh_datasketch(pairs, bands, rows, "sha1")),
        Score(f"datasketch MinHashLSH params=({bands}, {rows}), hashfunc=shingle_hash (= ours)",
              _lsh_datasketch(pairs, bands, rows, "ours")),
    ]


def _in_bucket(jac: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (jac >= lo) & ((jac < hi) if hi < 1.0 else (jac <= hi))


def evaluate(pairs: list[Pair], threshold: float = 0.7, bands: int = 14, rows: int = 8) -> str:
    """Markdown table: precision, recall, F1 of "predicted duplicate" against "true Jaccard >=
    threshold", and the share predicted per true-Jaccard bucket, for each method."""
    jac, methods = score(pairs, threshold, bands, rows)
    truth = jac >= threshold
    masks = [_in_bucket(jac, lo, hi) for lo, hi in BUCKETS]
    head = " | ".join(f"J {lo:.1f}-{hi:.1f} (n={int(m.sum())})"
                      for (lo, hi), m in zip(BUCKETS, masks, strict=True))
    lines = [f"| method | predicted | precision | recall | F1 | {head} |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(BUCKETS)]
    for s in methods:
        p, r, f = s.prf(truth)
        per = " | ".join(f"{s.predicted[m].mean():.3f}" if m.any() else "-" for m in masks)
        lines.append(f"| {s.method} | {int(s.predicted.sum())} | {p:.3f} | {r:.3f} | {f:.3f} | "
                     f"{per} |")
    theory = 1 - (1 - jac ** rows) ** bands  # P(candidate) for a pair of similarity J
    per = " | ".join(f"{theory[m].mean():.3f}" if m.any() else "-" for m in masks)
    lines.append(f"| theory: 1 - (1 - J^{rows})^{bands} | {theory.sum():.0f} | - | "
                 f"{theory[truth].mean():.3f} | - | {per} |")
    agree = [np.mean(methods[0].predicted == s.predicted) for s in methods[2:]]
    kinds = Counter(p.kind for p in pairs)
    lines.append("")
    lines.append(
        f"{len(pairs):,} generated pairs ({', '.join(f'{k} {n}' for k, n in kinds.items())}), "
        f"1-4 KB each; {int(truth.sum())} with true Jaccard >= {threshold} (word {NGRAM}-gram "
        f"shingles of the normalised texts, exact). J columns: share predicted duplicate per "
        f"true-Jaccard bucket (recall at and above the threshold, false-positive rate below). "
        f"Ours agrees with datasketch on {agree[0]:.1%} of pairs (sha1: independent hashes) and "
        f"{agree[1]:.1%} (`hashfunc=doc_keys.shingle_hash`: the same hashes). "
        "`python -m bench.dedup_pairs`.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()
    t0 = time.perf_counter()
    pairs = make_pairs(args.pairs, args.seed)
    t1 = time.perf_counter()
    print(evaluate(pairs, args.threshold))
    print(f"\n(generated in {t1 - t0:.1f} s, evaluated in {time.perf_counter() - t1:.1f} s)")


if __name__ == "__main__":
    main()
