"""Heuristic quality signals as columns: Gopher quality and repetition, C4, FineWeb.

Every rule of datatrove's ``GopherQualityFilter``, ``GopherRepetitionFilter``,
``C4QualityFilter`` and ``FineWebQualityFilter`` is split into a *signal* (a number per
document, computed here once) and a *threshold* (applied by :mod:`curate.quality.select`), so
thresholds change without recomputing anything. The signals reproduce datatrove's arithmetic
(same line splits, same words, same denominators), which is what makes the published
thresholds mean the same thing here.

The work is columnar: documents are cut into lines and whitespace-free chunks with polars,
only distinct chunks are split into words (:mod:`curate.quality.words`), per-word facts are
computed once per distinct word and gathered with numpy, and the in-order walks (n-gram
repetition, sentence counting) run in numba kernels (:mod:`curate.quality.kernels`).

Lines: C4, Gopher's bullet / ellipsis lines and the FineWeb rules use lines as
``str.splitlines`` makes them (any Unicode line break); the repetition rules use ``\\n`` runs
as datatrove does, after ``\\r\\n`` and the other line breaks are read as ``\\n``.
As in the FineWeb pipeline, the FineWeb signals are computed on the text that the C4 line
filter (FineWeb variant) leaves (``fineweb_after_c4``), and the Gopher ones on the full text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from curate.config import StageConfig
from curate.quality import kernels
from curate.quality.words import sentence_count, split_chunk
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import DOCUMENTS, read_shard

STAGE_NAME = "quality_signals"
PREFIX = "q_"

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
"""Gopher's English stop words (datatrove's default list)."""

POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                     "use of cookies", "use cookies")
CITATION_RE = r"\[\d*\]|\[edit\]|\[citation needed\]"
C4_END_PUNCTUATION = (".", "?", "!", '"', "'")

TERMINAL_PUNCTUATION = (
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964"
    "\u0965\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803"
    "\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c"
    "\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f"
    "\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb"
    "\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56"
    "\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048"
    "\U000110be\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6"
    "\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b"
    "\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce"
    "\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7"
    "\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43"
    "\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e"
    "\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88")
"""Sentence-ending marks of every script (datatrove's ``TERMINAL_PUNCTUATION``): FineWeb's line
ends, and the sentence ends of the sentence counter (spaCy's sentencizer uses the same list
less 31 marks of recent Unicode versions)."""

PUNCTUATION = (
    "!/\u2014\u201d:\uff05\uff11\u3008&(\u3001\u2501\\\u3010#%\u300c\u300d\uff0c\u3011\uff1b+^]~"
    "\u201c\u300a\u201e';\u2019{|\u2236\xb4[=-`*\uff0e\uff08\u2013\uff1f\uff01\uff1a$\uff5e\xab"
    "\u3009,><\u300b)?\uff09\u3002\u2026@_.\"}\u25ba\xbb"
    + "".join(map(chr, [*range(0, 9), 11, 12, *range(13, 32), *range(127, 160)])))
"""Marks a Gopher "symbol word" is made of (datatrove's ``PUNCTUATION``, plus the
terminal punctuation above)."""

PY_SPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
            + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000")
"""What Python's ``str.strip`` strips (``str.isspace``), for stripping exactly as datatrove does."""
LINE_BREAKS = "[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"
CHUNK_RE = r"[^\s\x1c-\x1f]+"
ODD_SPACE_RE = r"^[\s\x1c-\x1f]|[\s\x1c-\x1f]{2}|[^\S ]|[\x1c-\x1f]"
"""Whitespace that spaCy makes a token of (anything but one space between two words)."""
_ENDS = frozenset(TERMINAL_PUNCTUATION)
PARAGRAPH_RE = r"[^\n]+(?:\n[^\n]+)*"


def _char_class(chars: str, negate: bool = False) -> str:
    return "[" + ("^" if negate else "") + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


_NOT_SYMBOL_RE = _char_class(PUNCTUATION + TERMINAL_PUNCTUATION, negate=True)


class C4LineFilter(BaseModel):
    """C4's line filter (datatrove ``C4QualityFilter`` arguments; lines are ``\\n`` lines)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_words_per_line: int = 3
    """Lines with fewer whitespace-separated words are dropped; -1 disables."""
    max_word_length: int = 1000
    """Lines with a longer word are dropped; -1 disables."""
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class SignalsConfig(StageConfig):
    """Settings that change signal values (thresholds live in the selection recipe)."""

    top_ngrams: list[int] = Field(default_factory=lambda: [2, 3, 4])
    """n of the 'top n-gram character fraction' signals."""
    dup_ngrams: list[int] = Field(default_factory=lambda: [5, 6, 7, 8, 9, 10])
    """n of the 'duplicate n-gram character fraction' signals."""
    stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS))
    """Gopher stop words, counted case-sensitively as datatrove does."""
    stop_words_by_lang: dict[str, list[str]] = Field(default_factory=dict)
    """Stop words for documents whose ``lang`` column has this code (default: stop_words)."""
    c4: C4LineFilter = C4LineFilter()
    """C4 as published (``C4QualityFilter()`` defaults): signals ``q_c4_*``."""
    c4_fineweb: C4LineFilter = C4LineFilter(filter_no_terminal_punct=False)
    """C4 as FineWeb runs it (``filter_no_terminal_punct=False``): signals ``q_c4fw_*``."""
    fineweb_short_line_length: int = Field(30, ge=0)
    fineweb_after_c4: bool = True
    """Compute the FineWeb signals on the lines C4 (FineWeb variant) keeps, as the FineWeb
    pipeline does (its C4 step rewrites the text before the FineWeb filter sees it)."""


def signal_columns(cfg: SignalsConfig) -> list[str]:
    """Names of the columns :func:`compute_signals` adds, in order."""
    cols = ["q_chars", "q_gopher_word_count", "q_gopher_mean_word_length",
            "q_gopher_hash_ratio", "q_gopher_ellipsis_ratio", "q_gopher_bullet_lines_ratio",
            "q_gopher_ellipsis_lines_ratio", "q_gopher_alpha_words_ratio",
            "q_gopher_stop_words", "q_gopher_dup_para_frac", "q_gopher_dup_para_char_frac",
            "q_gopher_dup_line_frac", "q_gopher_dup_line_char_frac"]
    cols += [f"q_gopher_top_{n}gram_char_frac" for n in cfg.top_ngrams]
    cols += [f"q_gopher_dup_{n}gram_char_frac" for n in cfg.dup_ngrams]
    for p in ("q_c4", "q_c4fw"):
        cols += [f"{p}_lorem_ipsum_lines", f"{p}_curly_bracket_lines", f"{p}_sentences",
                 f"{p}_removed_lines"]
    cols += ["q_fineweb_line_punct_ratio", "q_fineweb_short_line_ratio",
             "q_fineweb_char_dup_ratio", "q_fineweb_newline_ratio"]
    return cols


# --- words ---------------------------------------------------------------------------------


@dataclass
class Words:
    """The words of some lines, in order: word ids, the line of each word, per-line counts."""

    ids: np.ndarray
    line: np.ndarray
    per_line: np.ndarray
    chunks_per_line: np.ndarray
    longest_chunk: np.ndarray


class Vocabulary:
    """Distinct words seen so far (id -> string) and their per-word facts."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.words: list[str] = []

    def ids_of(self, chunks: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Word ids of every distinct chunk, flattened, and each chunk's word count."""
        index, words = self.index, self.words
        flat: list[int] = []
        counts = np.empty(len(chunks), dtype=np.int64)
        for k, chunk in enumerate(chunks):
            tokens = split_chunk(chunk)
            counts[k] = len(tokens)
            for token in tokens:
                i = index.get(token)
                if i is None:
                    i = index[token] = len(words)
                    words.append(token)
                flat.append(i)
        return np.asarray(flat, dtype=np.int64), counts

    def facts(self) -> pl.DataFrame:
        """Per word: length, symbol-only, has a letter, all punctuation, ends a sentence."""
        w = pl.Series("w", self.words, dtype=pl.String)
        return pl.DataFrame({
            "len": w.str.len_chars().cast(pl.Int64),
            "symbol": ~w.str.contains(_NOT_SYMBOL_RE),
            "alpha": w.str.contains(r"\p{L}"),
            "punct": w.str.contains(r"^\p{P}+$"),
            "ends": w.is_in(list(TERMINAL_PUNCTUATION)),
        })


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c), vectorised."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    shift = np.repeat(starts - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


def split_lines_into_words(lines: pl.Series, vocab: Vocabulary) -> Words:
    """Words of each line, as datatrove's word tokenizer splits them (see ``words``)."""
    n = len(lines)
    chunk_lists = lines.str.extract_all(CHUNK_RE)
    per_line_chunks = chunk_lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    chunks = chunk_lists.explode().drop_nulls()
    chunk_len = chunks.str.len_chars().to_numpy().astype(np.int64)
    longest = np.zeros(n, dtype=np.int64)
    has = per_line_chunks > 0
    if len(chunk_len):
        starts = np.cumsum(per_line_chunks) - per_line_chunks
        longest[has] = np.maximum.reduceat(chunk_len, starts[has])
    encoded = chunks.to_arrow().dictionary_encode()
    flat, counts = vocab.ids_of(encoded.dictionary.to_pylist())
    which = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    first = np.cumsum(counts) - counts
    ids = flat[_ranges(first[which], counts[which])]
    chunk_line = np.repeat(np.arange(n, dtype=np.int64), per_line_chunks)
    line = np.repeat(chunk_line, counts[which])
    return Words(ids=ids, line=line, per_line=np.bincount(line, minlength=n),
                 chunks_per_line=per_line_chunks, longest_chunk=longest)


# --- helpers ---------------------------------------------------------------------------------


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64, NaN where den is 0 (written as null)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(len(num), np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _duplicates(doc: np.ndarray, values: pl.Series, lengths: np.ndarray, n_docs: int,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per document: (elements equal to an earlier one, their characters)."""
    if len(values) == 0:
        return np.zeros(n_docs, np.int64), np.zeros(n_docs, np.int64)
    frame = pl.DataFrame({"d": doc, "h": values.hash()})
    repeat = ~frame.select(pl.struct("d", "h").is_first_distinct()).to_series().to_numpy()
    count = np.bincount(doc[repeat], minlength=n_docs)
    chars = np.bincount(doc[repeat], weights=lengths[repeat], minlength=n_docs)
    return count.astype(np.int64), chars.astype(np.int64)


def _offsets(owner: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=n), out=out[1:])
    return out


def _normalise_breaks(text: pl.Series) -> pl.Series:
    """Every line break ``str.splitlines`` knows, as ``\\n`` (a no-op for most texts)."""
    if not text.str.contains(LINE_BREAKS).any():
        return text
    return text.str.replace_all("\r\n", "\n", literal=True).str.replace_all(LINE_BREAKS, "\n")


# --- the signal groups -----------------------------------------------------------------------


def _gopher_quality(out: dict, words: Words, word_doc: np.ndarray, facts: pl.DataFrame,
                    text: pl.Series, lines: pl.Series, line_doc: np.ndarray, n: int,
                    stop_counts: np.ndarray) -> None:
    symbol = facts["symbol"].to_numpy()[words.ids]
    length = facts["len"].to_numpy()[words.ids]
    alpha = facts["alpha"].to_numpy()[words.ids]
    n_words = np.bincount(word_doc, minlength=n)
    n_real = np.bincount(word_doc, weights=~symbol, minlength=n)
    real_len = np.bincount(word_doc, weights=np.where(symbol, 0, length), minlength=n)
    hashes = text.str.count_matches("#", literal=True).to_numpy()
    ellipses = (text.str.count_matches("...", literal=True).to_numpy()
                + text.str.count_matches("\u2026", literal=True).to_numpy())
    left = lines.str.strip_chars_start(PY_SPACE)
    right = lines.str.strip_chars_end(PY_SPACE)
    bullet = (left.str.starts_with("\u2022") | left.str.starts_with("-")).to_numpy()
    ellipsis_end = (right.str.ends_with("...") | right.str.ends_with("\u2026")).to_numpy()
    n_lines = np.bincount(line_doc, minlength=n)
    out["q_gopher_word_count"] = n_real.astype(np.int64)
    out["q_gopher_mean_word_length"] = _ratio(real_len, n_real)
    out["q_gopher_hash_ratio"] = _ratio(hashes, n_words)
    out["q_gopher_ellipsis_ratio"] = _ratio(ellipses, n_words)
    out["q_gopher_bullet_lines_ratio"] = _ratio(
        np.bincount(line_doc, weights=bullet, minlength=n), n_lines)
    out["q_gopher_ellipsis_lines_ratio"] = _ratio(
        np.bincount(line_doc, weights=ellipsis_end, minlength=n), n_lines)
    out["q_gopher_alpha_words_ratio"] = _ratio(np.bincount(word_doc, weights=alpha, minlength=n),
                                               n_words)
    out["q_gopher_stop_words"] = stop_counts


def _stop_word_counts(vocab: Vocabulary, ids: np.ndarray, word_doc: np.ndarray, n: int,
                      langs: list[str | None] | None, cfg: SignalsConfig) -> np.ndarray:
    """Distinct stop words per document (from its language's list when one is configured)."""
    counts = np.zeros(n, dtype=np.int64)
    doc_lists = np.zeros(n, dtype=np.int64)  # 0: default list, k: k-th configured language
    lists = [cfg.stop_words, *cfg.stop_words_by_lang.values()]
    if langs is not None and cfg.stop_words_by_lang:
        codes = {code: k + 1 for k, code in enumerate(cfg.stop_words_by_lang)}
        doc_lists = np.array([codes.get(lang, 0) for lang in langs], dtype=np.int64)
    for k, words in enumerate(lists):
        stop_ids = [vocab.index[w] for w in set(words) if w in vocab.index]
        if not stop_ids:
            continue
        hit = np.isin(ids, stop_ids) & (doc_lists[word_doc] == k)
        pairs = np.unique(word_doc[hit] * (len(vocab.words) + 1) + ids[hit])
        counts += np.bincount(pairs // (len(vocab.words) + 1), minlength=n)
    return counts


def _gopher_repetition(out: dict, cfg: SignalsConfig, text: pl.Series, chars: np.ndarray,
                       words: Words, word_doc: np.ndarray, facts: pl.DataFrame, n: int) -> None:
    """Paragraphs and lines split on ``\\n`` only, as datatrove's repetition filter does."""
    empty = chars == 0
    paragraphs = text.str.strip_chars(PY_SPACE).str.extract_all(PARAGRAPH_RE)
    para_count = paragraphs.list.len().fill_null(0).to_numpy().astype(np.int64)
    para = paragraphs.explode().drop_nulls()
    para_doc = np.repeat(np.arange(n), para_count)
    dup, dup_chars = _duplicates(para_doc, para, para.str.len_chars().to_numpy(), n)
    out["q_gopher_dup_para_frac"] = _null_where(_ratio(dup, np.maximum(para_count, 1)), empty)
    out["q_gopher_dup_para_char_frac"] = _null_where(_ratio(dup_chars, chars), empty)

    raw_lines = text.str.split("\n")
    raw_count = raw_lines.list.len().to_numpy().astype(np.int64)
    line = raw_lines.explode()
    line_doc = np.repeat(np.arange(n), raw_count)
    filled = (line != "").to_numpy()
    line, line_doc = line.filter(filled), line_doc[filled]
    dup, dup_chars = _duplicates(line_doc, line, line.str.len_chars().to_numpy(), n)
    edges = (text.str.starts_with("\n").to_numpy().astype(np.int64)
             + text.str.ends_with("\n").to_numpy().astype(np.int64))
    n_lines = np.bincount(line_doc, minlength=n) + edges
    dup = dup + (edges == 2)
    out["q_gopher_dup_line_frac"] = _null_where(_ratio(dup, n_lines), empty)
    out["q_gopher_dup_line_char_frac"] = _null_where(_ratio(dup_chars, chars), empty)

    offsets = _offsets(word_doc, n)
    lengths = facts["len"].to_numpy()[words.ids]
    keys = np.zeros(len(words.ids), dtype=np.uint64)
    wanted = set(cfg.top_ngrams) | set(cfg.dup_ngrams)
    for j in range(max(wanted, default=0)):
        keys = kernels.extend_keys(keys, words.ids, j)
        size = j + 1
        if size in cfg.top_ngrams:
            top = kernels.top_ngram_chars(keys, lengths, offsets, size).astype(np.float64)
            top[top < 0] = 0  # no n-gram at all: datatrove skips the check
            out[f"q_gopher_top_{size}gram_char_frac"] = _null_where(_ratio(top, chars), empty)
        if size in cfg.dup_ngrams:
            rep = kernels.duplicate_ngram_chars(keys, lengths, offsets, size)
            out[f"q_gopher_dup_{size}gram_char_frac"] = _null_where(_ratio(rep, chars), empty)


def _null_where(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = values.copy()
    values[mask] = np.nan
    return values


@dataclass
class _C4Lines:
    """Per-line facts shared by both C4 variants (lines as ``splitlines`` makes them)."""

    cleaned: pl.Series
    words: np.ndarray
    too_long: np.ndarray
    ends_ok: np.ndarray
    lorem: np.ndarray
    javascript: np.ndarray
    curly: np.ndarray
    policy: np.ndarray
    sentences: np.ndarray
    word_count: np.ndarray


def _c4_lines(lines: pl.Series, words: Words, facts_of, vocab: Vocabulary,
              cfg: C4LineFilter) -> _C4Lines:
    stripped = lines.str.strip_chars(PY_SPACE)
    cleaned = stripped.str.replace_all(CITATION_RE, "") if cfg.remove_citations else stripped
    lower = cleaned.str.to_lowercase()
    ends_ok = np.zeros(len(cleaned), dtype=bool)
    for mark in C4_END_PUNCTUATION:
        ends_ok |= cleaned.str.ends_with(mark).to_numpy()
    ends_ok &= ~cleaned.str.ends_with("...").to_numpy()
    policy = np.zeros(len(cleaned), dtype=bool)
    for phrase in POLICY_SUBSTRINGS:
        policy |= lower.str.contains(phrase, literal=True).to_numpy()
    sentences, word_count = _sentences(words, facts_of())
    changed = np.flatnonzero((cleaned != stripped).to_numpy())
    if len(changed):  # citations removed: count the words of what is left
        again = split_lines_into_words(cleaned.gather(changed), vocab)
        s2, w2 = _sentences(again, facts_of())
        sentences, word_count = sentences.copy(), word_count.copy()
        sentences[changed], word_count[changed] = s2, w2
    odd = np.flatnonzero(cleaned.str.contains(ODD_SPACE_RE).to_numpy())
    if len(odd):  # whitespace tokens can start sentences: count those lines one by one
        sentences = sentences.copy()
        sentences[odd] = [sentence_count(line, _ENDS) for line in cleaned.gather(odd)]
    too_long = (words.longest_chunk > cfg.max_word_length) if cfg.max_word_length != -1 else (
        np.zeros(len(lines), dtype=bool))
    return _C4Lines(cleaned=cleaned, words=words.chunks_per_line, too_long=too_long,
                    ends_ok=ends_ok, lorem=lower.str.contains("lorem ipsum",
                                                                           literal=True).to_numpy(),
                    javascript=lower.str.contains("javascript", literal=True).to_numpy(),
                    curly=cleaned.str.contains("{", literal=True).to_numpy(),
                    policy=policy, sentences=sentences, word_count=word_count)


def _sentences(words: Words, facts: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    offsets = _offsets(words.line, len(words.per_line))
    punct = facts["punct"].to_numpy()[words.ids]
    ends = facts["ends"].to_numpy()[words.ids]
    return kernels.sentences_per_line(punct, ends, offsets), words.per_line


def _c4_variant(out: dict, prefix: str, c4: _C4Lines, cfg: C4LineFilter, line_doc: np.ndarray,
                n: int) -> np.ndarray:
    """C4 signals of one variant; returns the mask of lines it keeps."""
    eligible = ~c4.too_long & (c4.words >= cfg.min_words_per_line)
    if cfg.filter_no_terminal_punct:
        eligible &= c4.ends_ok
    lorem = eligible & c4.lorem if cfg.filter_lorem_ipsum else np.zeros_like(eligible)
    js = eligible & c4.javascript if cfg.filter_javascript else np.zeros_like(eligible)
    curly = (eligible & ~lorem & ~js & c4.curly) if cfg.filter_curly_bracket else (
        np.zeros_like(eligible))
    policy = eligible & c4.policy if cfg.filter_policy else np.zeros_like(eligible)
    kept = eligible & ~lorem & ~js & ~curly & ~policy
    out[f"{prefix}_lorem_ipsum_lines"] = np.bincount(line_doc, weights=lorem, minlength=n)
    out[f"{prefix}_curly_bracket_lines"] = np.bincount(line_doc, weights=curly, minlength=n)
    out[f"{prefix}_sentences"] = np.bincount(line_doc, weights=np.where(kept, c4.sentences, 0),
                                             minlength=n)
    out[f"{prefix}_removed_lines"] = np.bincount(line_doc, weights=~kept & ~lorem & ~curly,
                                                 minlength=n)
    for key in ("lorem_ipsum_lines", "curly_bracket_lines", "sentences", "removed_lines"):
        out[f"{prefix}_{key}"] = out[f"{prefix}_{key}"].astype(np.int64)
    return kept


def _fineweb(out: dict, lines: pl.Series, doc: np.ndarray, word_count: np.ndarray, n: int,
             short_length: int) -> None:
    """FineWeb's rules on the text ``"\\n".join(lines).strip()`` (lines in document order)."""
    frame = pl.DataFrame({"d": doc, "line": lines, "w": word_count}).with_row_index("pos")
    nonblank = frame["line"].str.strip_chars(PY_SPACE) != ""
    bounds = (frame.filter(nonblank).group_by("d")
              .agg(pl.col("pos").min().alias("lo"), pl.col("pos").max().alias("hi")))
    frame = frame.join(bounds, on="d", how="inner", maintain_order="left")
    frame = frame.filter((pl.col("pos") >= pl.col("lo")) & (pl.col("pos") <= pl.col("hi")))
    line = pl.col("line")
    frame = frame.with_columns(
        pl.when(pl.col("pos") == pl.col("lo")).then(line.str.strip_chars_start(PY_SPACE))
        .otherwise(line).alias("line"))
    frame = frame.with_columns(
        pl.when(pl.col("pos") == pl.col("hi")).then(line.str.strip_chars_end(PY_SPACE))
        .otherwise(line).alias("line"))
    frame = frame.with_columns(line.str.len_chars().cast(pl.Int64).alias("len"),
                               (line.str.strip_chars(PY_SPACE) != "").alias("nb"))
    d = frame["d"].to_numpy().astype(np.int64)
    nb = frame["nb"].to_numpy()
    length = frame["len"].to_numpy()
    ends = frame["line"].str.slice(-1).is_in(list(TERMINAL_PUNCTUATION)).to_numpy() & nb
    short = (length <= short_length) & nb
    n_nb = np.bincount(d, weights=nb, minlength=n)
    good = frame.filter(pl.col("nb"))
    _, dup_chars = _duplicates(good["d"].to_numpy().astype(np.int64), good["line"],
                               good["len"].to_numpy(), n)
    chars = np.bincount(d, weights=length, minlength=n)
    newlines = np.maximum(np.bincount(d, minlength=n) - 1, 0)
    words = np.bincount(d, weights=frame["w"].to_numpy(), minlength=n)
    punct = _ratio(np.bincount(d, weights=ends, minlength=n), n_nb)
    punct[n_nb == 0] = 0.0  # an empty text fails this rule (datatrove: reason "empty")
    out["q_fineweb_line_punct_ratio"] = punct
    out["q_fineweb_short_line_ratio"] = _ratio(np.bincount(d, weights=short, minlength=n), n_nb)
    out["q_fineweb_char_dup_ratio"] = _ratio(dup_chars, chars)
    out["q_fineweb_newline_ratio"] = _ratio(newlines, words)


# --- entry points ----------------------------------------------------------------------------


def compute_signals(table: pa.Table, cfg: SignalsConfig | None = None) -> dict[str, np.ndarray]:
    """Signal name -> one value per row of ``table`` (NaN: the signal does not apply)."""
    cfg = cfg or SignalsConfig()
    n = table.num_rows
    text = pl.Series("text", table.column("text")).fill_null("")
    chars = text.str.len_chars().to_numpy().astype(np.int64)
    norm = _normalise_breaks(text)
    split = norm.str.split("\n")
    count = split.list.len().to_numpy().astype(np.int64)
    all_lines = split.explode()
    position = _ranges(np.zeros(n, dtype=np.int64), count)
    last = position == np.repeat(count - 1, count)
    keep = ~(last & (all_lines == "").to_numpy())  # str.splitlines drops the final empty line
    lines = all_lines.filter(keep)
    line_doc = np.repeat(np.arange(n, dtype=np.int64), count)[keep]

    vocab = Vocabulary()
    words = split_lines_into_words(lines, vocab)
    word_doc = line_doc[words.line]
    cache: dict[int, pl.DataFrame] = {}

    def facts_of() -> pl.DataFrame:
        size = len(vocab.words)
        if size not in cache:
            cache.clear()
            cache[size] = vocab.facts()
        return cache[size]

    langs = table.column("lang").to_pylist() if "lang" in table.column_names else None
    out: dict[str, np.ndarray] = {"q_chars": chars}
    _gopher_quality(out, words, word_doc, facts_of(), text, lines, line_doc, n,
                    _stop_word_counts(vocab, words.ids, word_doc, n, langs, cfg))
    _gopher_repetition(out, cfg, text, chars, words, word_doc, facts_of(), n)
    kept_fw = None
    c4_cache: dict[C4LineFilter, _C4Lines] = {}
    for prefix, variant in (("q_c4", cfg.c4), ("q_c4fw", cfg.c4_fineweb)):
        key = variant.model_copy(update={"filter_no_terminal_punct": False})
        if key not in c4_cache:
            c4_cache[key] = _c4_lines(lines, words, facts_of, vocab, variant)
        c4 = c4_cache[key]
        kept = _c4_variant(out, prefix, c4, variant, line_doc, n)
        if prefix == "q_c4fw":
            kept_fw = (c4, kept)
    if cfg.fineweb_after_c4 and kept_fw is not None:
        c4, kept = kept_fw
        _fineweb(out, c4.cleaned.filter(kept), line_doc[kept], c4.word_count[kept], n,
                 cfg.fineweb_short_line_length)
    else:
        fw_lines = all_lines
        fw_doc = np.repeat(np.arange(n, dtype=np.int64), count)
        fw_words = split_lines_into_words(fw_lines, vocab)
        _fineweb(out, fw_lines, fw_doc, fw_words.per_line, n, cfg.fineweb_short_line_length)
    return {name: out[name] for name in signal_columns(cfg)}


def _arrow(values: np.ndarray) -> pa.Array:
    if values.dtype.kind == "f":
        return pa.array(values, pa.float64(), from_pandas=True)  # NaN -> null
    return pa.array(values.astype(np.int64), pa.int64())


def add_signals(table: pa.Table, cfg: SignalsConfig | None = None) -> pa.Table:
    """``table`` with the signal columns set (replacing any earlier ones)."""
    for name, values in compute_signals(table, cfg).items():
        i = table.schema.get_field_index(name)
        col = _arrow(values)
        table = table.set_column(i, name, col) if i >= 0 else table.append_column(name, col)
    return table


def signals_unit(unit: WorkUnit, cfg: SignalsConfig) -> StageOutput:
    """One documents shard in, the same rows with the signal columns out (nothing rejected)."""
    (path,) = unit.inputs
    table = add_signals(read_shard(path), cfg)
    empty = table.slice(0, 0)
    rejected = (empty.append_column("reject_stage", pa.array([], pa.string()))
                .append_column("reject_reason", pa.array([], pa.string()))
                .append_column("reject_detail", pa.array([], pa.string())))
    return StageOutput(kept=table, rejected=rejected, rows_in=table.num_rows)


QUALITY_SIGNALS = Stage(name=STAGE_NAME, version="1", output_kind=DOCUMENTS,
                        process=signals_unit)
