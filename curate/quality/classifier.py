"""A fastText quality classifier: train it on good vs bad documents, score documents with it.

:func:`train_classifier` reads two sets of documents (stage folders or shards), for example
curated reference text (positives, ``__label__hq``) and raw crawl (negatives,
``__label__lq``), splits them into train and held-out by a hash of the document id (so a
document stays on its side whatever else is added), trains a supervised fastText model and
reports held-out precision / recall / F1 / accuracy at 0.5 plus a small precision-recall
table. The folder it writes holds ``model.bin`` (and ``model.ftz`` when quantized) and
``model.json``: the version (the model file's content hash), the config, the sha256 of every
shard read, the counts, the metrics and the library versions.

Text preprocessing is the same for training and scoring: the first ``max_chars`` characters
on one line (:func:`curate.langid.one_line_prefixes`), optionally lower-cased, with the
fastText label prefix ``__label__`` removed from the text so a document cannot inject labels.

Training runs in a child process. The fastText build we use (fasttext-numpy2 0.10.4) keeps
its input matrix in an aligned buffer that is not zeroed and, with one thread, initialises
only its first tenth (``DenseMatrix::uniformThread``); the rest is whatever the allocator
hands back, so training in a used process gives "Encountered NaN." (every time for unigram
models, whose matrix is small) or a model that depends on what the process did before. The
child fixes glibc's mmap threshold before fastText runs, so the matrix comes from fresh,
zeroed pages (the rest then starts at zero, as in fastText 0.9.2): with ``threads: 1`` the
same inputs and config give a byte-identical ``model.bin``.

The ``quality_score`` stage (:data:`QUALITY_SCORE`) adds a score column (the probability of
``label``) from one of our model folders or any fastText ``.bin`` / ``.ftz`` file, and rejects
rows below ``threshold`` when one is set.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field, field_validator

from curate.config import StageConfig
from curate.langid import LanguageModel, one_line_prefixes
from curate.runner import Stage, StageOutput, WorkUnit
from curate.tokenizer import training_shards
from schemas import DOCUMENTS, read_shard, sha256_file
from schemas.shards import replaced_folder
from schemas.version import __version__

STAGE_NAME = "quality_score"
TRAIN_SECTION = "quality_train"
"""Section of a YAML recipe that holds the training config."""
LABEL_PREFIX = "__label__"
POSITIVE_LABEL = "__label__hq"
NEGATIVE_LABEL = "__label__lq"
MODEL_FILE = "model.bin"
QUANTIZED_FILE = "model.ftz"
METADATA_FILE = "model.json"
METADATA_FORMAT = 1
DEFAULT_MAX_CHARS = 2000
PR_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LOW_QUALITY = "low_quality_score"
WRITE_BATCH = 65536
"""Training lines converted to Python strings at a time while writing the fastText file."""


# --- config ------------------------------------------------------------------------------------

class ClassifierConfig(StageConfig):
    """Text preprocessing, the train/held-out split and fastText's training settings."""

    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=1)
    """Use the first this many characters of each document (scoring uses the same)."""
    lowercase: bool = True
    heldout_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of documents (by id hash) kept out of training to measure the model; 0 = none."""
    split_seed: int = 0
    """Salt of the id hash that decides the split, the sample cap and the training order."""
    max_docs_per_class: int | None = Field(None, ge=1)
    """Cap each class to a hash-chosen sample of this many documents (before the split)."""
    epoch: int = Field(20, ge=1)
    """Passes over the training set; 20 suits thousands of documents, 5 a million."""
    lr: float = Field(0.5, gt=0.0)
    """fastText's starting learning rate (it decays to 0); its 0.1 default underfits small
    sets of long documents."""
    word_ngrams: int = Field(2, ge=1, le=6)
    """fastText ``wordNgrams``: 2 adds word bigrams, which see word order."""
    dim: int = Field(64, ge=1)
    min_count: int = Field(1, ge=1)
    bucket: int = Field(200_000, ge=1)
    """Hash buckets for word n-grams; the model holds ``(words + bucket) x dim`` floats."""
    seed: int = 0
    """fastText's seed (its initial weights); 0 and 1 give the same model (std::minstd_rand
    treats a zero seed as 1)."""
    threads: int = Field(1, ge=1)
    """fastText training threads; only 1 gives the same model every time."""
    quantize: bool = False
    """Also write ``model.ftz``, a product-quantized copy several times smaller."""

    def fasttext_params(self) -> dict[str, Any]:
        """Keyword arguments for ``fasttext.train_supervised``."""
        return {"epoch": self.epoch, "lr": self.lr, "wordNgrams": self.word_ngrams,
                "dim": self.dim, "minCount": self.min_count, "bucket": self.bucket,
                "thread": self.threads, "seed": self.seed, "loss": "softmax", "verbose": 0}


class QualityScoreConfig(StageConfig):
    """Which model scores, which of its labels is the score, and what is kept."""

    model_path: str
    """A folder written by ``curate quality train``, or any fastText .bin/.ftz file."""
    label: str = POSITIVE_LABEL
    """The label whose probability is the score (``__label__`` may be left out)."""
    column: str = "quality_score"
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    """Reject documents scoring below this; unset = score only, keep everything."""
    max_chars: int | None = Field(None, ge=1)
    """Characters scored; unset = what the model was trained with (2000 for other models)."""
    lowercase: bool | None = None
    """Lower-case the text first; unset = as the model was trained (no for other models)."""
    batch_size: int = Field(1024, ge=1)
    model_version: str | None = None
    """Content hash of the model file, filled in by the command so that a changed model
    re-scores shards on a re-run; leave it unset."""

    @field_validator("column")
    @classmethod
    def _own_column(cls, value: str) -> str:
        if not value or DOCUMENTS.column(value) is not None or value.startswith("reject_"):
            raise ValueError(f"column {value!r} would overwrite a document column; "
                             "choose another name")
        return value


# --- text and data -----------------------------------------------------------------------------

def prepare_lines(texts: pa.Array | pa.ChunkedArray, max_chars: int, lowercase: bool) -> pa.Array:
    """The text fastText sees: a one-line prefix, optionally lower-cased, without label
    markers (a ``__label__x`` word in a document would become a label when training)."""
    lines = one_line_prefixes(texts, max_chars)
    if lowercase:
        lines = pc.utf8_lower(lines)
    return pc.utf8_trim_whitespace(pc.replace_substring(lines, LABEL_PREFIX, " "))


@dataclass
class _ClassData:
    """One class's documents after preprocessing (blank ones dropped)."""

    ids: pa.Array
    lines: pa.Array
    shards: list[dict[str, Any]]
    blank: int


def _read_class(inputs: Sequence[Path], cfg: ClassifierConfig, what: str) -> _ClassData:
    """Ids and prepared lines of every document in ``inputs``, plus what was read."""
    if not inputs:
        raise ValueError(f"no {what} inputs given")
    tables, shards = [], []
    for path in training_shards(list(inputs)):
        table = read_shard(path)
        missing = {"id", "text"} - set(table.column_names)
        if missing:
            raise ValueError(f"{path}: no {' / '.join(sorted(missing))} column; "
                             "is it a documents shard?")
        tables.append(table.select(["id", "text"]))
        shards.append({"path": str(path.resolve()), "sha256": sha256_file(path),
                       "docs": table.num_rows})
    table = pa.concat_tables(tables)
    lines = prepare_lines(table.column("text"), cfg.max_chars, cfg.lowercase)
    keep = pc.not_equal(lines, "")
    ids = pc.fill_null(table.column("id"), "").combine_chunks()
    data = _ClassData(ids.filter(keep), lines.filter(keep), shards, blank=0)
    data.blank = table.num_rows - len(data.ids)
    if len(data.ids) == 0:
        raise ValueError(f"no {what} documents with text in "
                         f"{', '.join(str(p) for p in inputs)}")
    return data


def id_hashes(ids: pa.Array, salt: int) -> np.ndarray:
    """xxh64 of each id (``salt`` as the seed): the high 32 bits pick the split, the low 32
    bits the sample and the training order, so the three are independent."""
    seed = salt % (1 << 64)
    return np.fromiter((xxhash.xxh64_intdigest(i.encode(), seed) for i in ids.to_pylist()),
                       dtype=np.uint64, count=len(ids))


def _split(hashes: np.ndarray, fraction: float) -> np.ndarray:
    """True where a document is held out."""
    return (hashes >> np.uint64(32)).astype(np.float64) < fraction * 2.0 ** 32


def _cap(data: _ClassData, hashes: np.ndarray, limit: int | None
         ) -> tuple[_ClassData, np.ndarray, int]:
    """Keep the ``limit`` documents with the smallest low hash bits (a seeded sample)."""
    if limit is None or len(hashes) <= limit:
        return data, hashes, 0
    chosen = np.sort(np.argsort(hashes & np.uint64(0xFFFFFFFF), kind="stable")[:limit])
    take = pa.array(chosen, pa.int64())
    capped = _ClassData(data.ids.take(take), data.lines.take(take), data.shards, data.blank)
    return capped, hashes[chosen], len(hashes) - limit


# --- metrics -----------------------------------------------------------------------------------

def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 6) if den else None


def binary_metrics(scores: np.ndarray, truth: np.ndarray, threshold: float = 0.5
                   ) -> dict[str, Any]:
    """Counts, precision/recall/F1 of the positive class and accuracy at ``threshold``
    (predicted positive when score >= threshold); a ratio with nothing to count is None."""
    pred = scores >= threshold
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    tn = int(np.sum(~pred & ~truth))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = (round(2 * precision * recall / (precision + recall), 6)
          if precision is not None and recall is not None and precision + recall > 0 else None)
    return {"threshold": threshold, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": precision, "recall": recall, "f1": f1,
            "accuracy": _ratio(tp + tn, len(scores)), "kept_fraction": _ratio(tp + fp,
                                                                               len(scores))}


def pr_table(scores: np.ndarray, truth: np.ndarray,
             thresholds: Sequence[float] = PR_THRESHOLDS) -> list[dict[str, Any]]:
    """Precision, recall and the share of documents kept at several thresholds."""
    rows = []
    for t in thresholds:
        m = binary_metrics(scores, truth, t)
        rows.append({k: m[k] for k in ("threshold", "precision", "recall", "f1",
                                       "kept_fraction")})
    return rows


# --- training ----------------------------------------------------------------------------------

_TRAIN_CHILD = r"""
import ctypes, ctypes.util, json, sys
try:  # fresh zeroed pages for fastText's (unzeroed, partly initialised) input matrix
    _libc = ctypes.CDLL(ctypes.util.find_library("c"))
    _libc.mallopt(-3, 65536)  # M_MMAP_THRESHOLD: fixed, so blocks >= 64 KiB are mmapped
    _libc.mallopt(-1, 65536)  # M_TRIM_THRESHOLD: little reused memory left at the heap top
except (OSError, AttributeError, TypeError):
    pass
import fasttext
spec = json.load(open(sys.argv[1], encoding="utf-8"))
model = fasttext.train_supervised(input=spec["input"], **spec["params"])
model.save_model(spec["model"])
if spec["quantized"]:
    model.quantize(input=spec["input"], qnorm=True, retrain=False)
    model.save_model(spec["quantized"])
"""


def _run_fasttext(train_file: Path, model: Path, quantized: Path | None,
                  params: dict[str, Any]) -> None:
    """Train (and quantize) in a fresh interpreter; see the module docstring for why."""
    spec_path = train_file.with_name("spec.json")
    spec = {"input": str(train_file), "model": str(model),
            "quantized": str(quantized) if quantized else None, "params": params}
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _TRAIN_CHILD, str(spec_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [
            f"exit status {proc.returncode} (killed, out of memory?)"]
        hint = "; lower lr" if "NaN" in tail[0] else ""
        raise RuntimeError(f"fastText training failed: {tail[0]}{hint}")


def _write_training_file(path: Path, labels: pa.Array, lines: pa.Array) -> None:
    joined = pc.binary_join_element_wise(labels, lines, " ")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for start in range(0, len(joined), WRITE_BATCH):
            f.write("\n".join(joined.slice(start, WRITE_BATCH).to_pylist()))
            f.write("\n")


def fasttext_version() -> dict[str, str]:
    """Which distribution provides the ``fasttext`` module, and its version."""
    for dist in ("fasttext-numpy2", "fasttext-wheel", "fasttext"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return {"distribution": dist, "version": importlib.metadata.version(dist)}
    return {"distribution": "unknown", "version": "unknown"}


def _file_entry(path: Path) -> dict[str, Any]:
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _check_output(out_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier model folder of ours."""
    if out_dir.exists() and (not out_dir.is_dir() or (
            any(out_dir.iterdir()) and not (out_dir / METADATA_FILE).is_file())):
        raise ValueError(f"{out_dir} exists and is not a quality model folder written by "
                         "curate; refusing to overwrite it")


@dataclass(frozen=True)
class ClassifierReport:
    """What :func:`train_classifier` made and how well it does on held-out documents."""

    path: Path
    version: str
    counts: dict[str, Any]
    metrics: dict[str, Any] | None
    """Held-out metrics at threshold 0.5 (None without held-out documents)."""
    pr_table: list[dict[str, Any]]
    quantized_metrics: dict[str, Any] | None
    files: list[dict[str, Any]]
    seconds: float
    metadata: dict[str, Any] = field(repr=False, default_factory=dict)

    def summary(self) -> str:
        c = self.counts

        def fmt(v: float | None) -> str:
            return "  n/a" if v is None else f"{v:.3f}"

        lines = [
            f"quality classifier -> {self.path}  (version {self.version})",
            f"  data     train {c['train']['hq'] + c['train']['lq']:,} (hq {c['train']['hq']:,}, "
            f"lq {c['train']['lq']:,})  held-out {c['heldout']['hq'] + c['heldout']['lq']:,} "
            f"(hq {c['heldout']['hq']:,}, lq {c['heldout']['lq']:,})",
            f"           blank dropped {c['blank']['hq'] + c['blank']['lq']:,}, capped away "
            f"{c['capped']['hq'] + c['capped']['lq']:,}",
        ]
        if self.metrics is None:
            lines.append("  held-out none (heldout_fraction 0): no metrics")
        else:
            m = self.metrics
            lines.append(f"  held-out precision {fmt(m['precision'])}  recall {fmt(m['recall'])}"
                         f"  f1 {fmt(m['f1'])}  accuracy {fmt(m['accuracy'])}  (at 0.5)")
            lines.append("           threshold  precision  recall   f1     kept")
            for row in self.pr_table:
                lines.append(f"           {row['threshold']:>9.1f}  {fmt(row['precision']):>9}  "
                             f"{fmt(row['recall']):>6}  {fmt(row['f1']):>5}  "
                             f"{fmt(row['kept_fraction']):>5}")
        if self.quantized_metrics is not None:
            q = self.quantized_metrics
            lines.append(f"  quantized precision {fmt(q['precision'])}  recall "
                         f"{fmt(q['recall'])}  f1 {fmt(q['f1'])}  (model.ftz, at 0.5)")
        files = ", ".join(f"{f['name']} {f['bytes'] / 1e6:,.1f} MB" for f in self.files)
        lines.append(f"  files    {files}, {METADATA_FILE}")
        lines.append(f"  time     {self.seconds:.2f} s")
        return "\n".join(lines)


def _class_counts(truth: np.ndarray) -> dict[str, int]:
    return {"hq": int(truth.sum()), "lq": int((~truth).sum())}


@dataclass
class _Dataset:
    """Both classes' prepared lines with the split: training rows in training order."""

    lines: pa.Array
    truth: np.ndarray
    """True for positives."""
    train: np.ndarray
    heldout: np.ndarray
    counts: dict[str, Any]
    shards: dict[str, list[dict[str, Any]]]

    def take(self, rows: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        return self.lines.take(pa.array(rows, pa.int64())), self.truth[rows]


def _dataset(positive: Sequence[Path], negative: Sequence[Path],
             cfg: ClassifierConfig) -> _Dataset:
    """Read both classes, cap them, split by id hash and order the training rows."""
    pos = _read_class(positive, cfg, "positive")
    neg = _read_class(negative, cfg, "negative")
    pos, pos_hash, pos_capped = _cap(pos, id_hashes(pos.ids, cfg.split_seed),
                                     cfg.max_docs_per_class)
    neg, neg_hash, neg_capped = _cap(neg, id_hashes(neg.ids, cfg.split_seed),
                                     cfg.max_docs_per_class)
    hashes = np.concatenate([pos_hash, neg_hash])
    truth = np.concatenate([np.ones(len(pos_hash), bool), np.zeros(len(neg_hash), bool)])
    held = _split(hashes, cfg.heldout_fraction)
    train = np.flatnonzero(~held)
    # a seeded shuffle: SGD over a file sorted by class would learn the last class best
    train = train[np.argsort(hashes[train] & np.uint64(0xFFFFFFFF), kind="stable")]
    heldout = np.flatnonzero(held)
    counts = {"train": _class_counts(truth[train]), "heldout": _class_counts(truth[heldout]),
              "blank": {"hq": pos.blank, "lq": neg.blank},
              "capped": {"hq": pos_capped, "lq": neg_capped}}
    for name, n in counts["train"].items():
        if n == 0:
            raise ValueError(f"the training split has no {name} documents; add documents or "
                             "lower heldout_fraction")
    return _Dataset(pa.concat_arrays([pos.lines, neg.lines]), truth, train, heldout, counts,
                    {"positive": pos.shards, "negative": neg.shards})


def _evaluate(model_file: Path, lines: pa.Array, truth: np.ndarray
              ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Held-out metrics at 0.5 and the PR table (None and [] without held-out rows)."""
    if len(truth) == 0:
        return None, []
    scores = label_probabilities(_load_uncached(model_file), lines, POSITIVE_LABEL)
    return binary_metrics(scores, truth), pr_table(scores, truth)


def _data_hash(shards: dict[str, list[dict[str, Any]]]) -> str:
    """One hash of the training data: each class's shard hashes, order-free."""
    digests = {k: sorted(s["sha256"] for s in v) for k, v in shards.items()}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:16]


def train_classifier(positive: Sequence[Path], negative: Sequence[Path], out_dir: Path,
                     cfg: ClassifierConfig | None = None) -> ClassifierReport:
    """Train a fastText hq/lq classifier on ``positive`` vs ``negative`` documents (stage
    folders or shards), measure it on the held-out split and save the model folder."""
    cfg = cfg or ClassifierConfig()
    out_dir = Path(out_dir)
    _check_output(out_dir)  # before the work, not only after it
    t0 = time.perf_counter()
    data = _dataset(positive, negative, cfg)
    train_lines, train_truth = data.take(data.train)
    held_lines, held_truth = data.take(data.heldout)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quality-train-", dir=out_dir.parent) as work:
        work_dir = Path(work)
        train_file = work_dir / "train.txt"
        labels = pa.array(np.where(train_truth, POSITIVE_LABEL, NEGATIVE_LABEL), pa.string())
        _write_training_file(train_file, labels, train_lines)
        model_file = work_dir / MODEL_FILE
        quantized_file = work_dir / QUANTIZED_FILE if cfg.quantize else None
        _run_fasttext(train_file, model_file, quantized_file, cfg.fasttext_params())
        metrics, table = _evaluate(model_file, held_lines, held_truth)
        quantized_metrics = (_evaluate(quantized_file, held_lines, held_truth)[0]
                             if quantized_file is not None else None)
        files = [_file_entry(p) for p in (model_file, quantized_file) if p is not None]
        version = files[0]["sha256"][:16]
        metadata = {
            "format": METADATA_FORMAT,
            "kind": "quality_classifier",
            "version": version,
            "model_file": MODEL_FILE,
            "quantized_file": QUANTIZED_FILE if cfg.quantize else None,
            "files": {f["name"]: f for f in files},
            "labels": {"positive": POSITIVE_LABEL, "negative": NEGATIVE_LABEL},
            "preprocessing": {"max_chars": cfg.max_chars, "lowercase": cfg.lowercase,
                              "one_line": True, "strip_label_prefix": LABEL_PREFIX},
            "config": cfg.model_dump(mode="json"),
            "config_hash": cfg.config_hash(),
            "fasttext_params": cfg.fasttext_params(),
            "data": data.shards,
            "data_hash": _data_hash(data.shards),
            "counts": data.counts,
            "metrics": {"heldout": metrics, "pr_table": table, "quantized": quantized_metrics},
            "library_version": __version__,
            "fasttext": fasttext_version(),
            "created_at": time.time(),
        }
        with replaced_folder(out_dir) as tmp:
            for f in files:
                os.replace(work_dir / f["name"], tmp / f["name"])
            (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n",
                                             encoding="utf-8")
    return ClassifierReport(path=out_dir, version=version, counts=data.counts, metrics=metrics,
                            pr_table=table, quantized_metrics=quantized_metrics, files=files,
                            seconds=time.perf_counter() - t0, metadata=metadata)


# --- scoring -----------------------------------------------------------------------------------

def _load_uncached(path: Path) -> LanguageModel:
    import fasttext  # lazy: importing curate must stay cheap

    return fasttext.load_model(str(path))


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, size: int, mtime_ns: int) -> LanguageModel:
    return _load_uncached(Path(path))


def load_scoring_model(path: Path) -> LanguageModel:
    """The fastText model at ``path``, loaded once per process while the file is unchanged
    (a model retrained into the same folder is loaded afresh)."""
    st = path.stat()
    return _load_cached(str(path), st.st_size, st.st_mtime_ns)


def label_probabilities(model: LanguageModel, lines: pa.Array, label: str,
                        batch_size: int = 1024) -> np.ndarray:
    """P(``label``) per prepared line as float32 in [0, 1]; a blank line scores 0."""
    present = np.flatnonzero(pc.not_equal(lines, "").to_numpy(zero_copy_only=False))
    todo = lines.take(pa.array(present, pa.int64())).to_pylist()
    scores = np.zeros(len(lines), dtype=np.float32)
    for start in range(0, len(todo), batch_size):
        labels, probs = model.predict(todo[start:start + batch_size], k=-1)
        scores[present[start:start + len(labels)]] = [
            p[labs.index(label)] if label in labs else 0.0
            for labs, p in zip(labels, probs, strict=True)]
    # softmax outputs can exceed 1 by a rounding step; the column is documented as [0, 1]
    return np.clip(scores, 0.0, 1.0)


@dataclass(frozen=True)
class ScoringModel:
    """A fastText file to score with, and our ``model.json`` when it has one."""

    path: Path
    metadata: dict[str, Any] | None

    @property
    def max_chars(self) -> int:
        meta = self.metadata
        return meta["preprocessing"]["max_chars"] if meta else DEFAULT_MAX_CHARS

    @property
    def lowercase(self) -> bool:
        meta = self.metadata
        return bool(meta["preprocessing"]["lowercase"]) if meta else False

    def version(self) -> str:
        """The model file's content hash (from model.json when recorded, else computed)."""
        entry = (self.metadata or {}).get("files", {}).get(self.path.name)
        return (entry["sha256"] if entry else sha256_file(self.path))[:16]


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable model metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") != "quality_classifier":
        raise ValueError(f"{path} is not a quality classifier's {METADATA_FILE}")
    return meta


def locate_model(model_path: str | Path) -> ScoringModel:
    """The model file behind ``model_path``: a folder from ``curate quality train`` (its
    model.bin), or a fastText file (with its folder's model.json when that names it)."""
    path = Path(model_path).expanduser()
    if path.is_dir():
        meta_path = path / METADATA_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{path} is a folder without {METADATA_FILE}; pass a folder "
                                    "written by `curate quality train` or a fastText .bin/.ftz "
                                    "file")
        meta = _read_metadata(meta_path)
        model = ScoringModel((path / meta["model_file"]).resolve(), meta)
    elif path.is_file():
        sibling = path.parent / METADATA_FILE
        meta = _read_metadata(sibling) if sibling.is_file() else None
        if meta is not None and path.name not in (meta.get("model_file"),
                                                  meta.get("quantized_file")):
            meta = None
        model = ScoringModel(path.resolve(), meta)
    else:
        raise FileNotFoundError(f"quality model not found: {path}")
    if not model.path.is_file():
        raise FileNotFoundError(f"quality model file not found: {model.path}")
    return model


def resolve_label(model: Any, label: str, where: Path) -> str:
    """``label`` as the model spells it (``hq`` finds ``__label__hq``), or a clear error."""
    labels = list(model.get_labels())
    for candidate in (label, LABEL_PREFIX + label):
        if candidate in labels:
            return candidate
    shown = ", ".join(labels[:12]) + (f", ... ({len(labels)} labels)" if len(labels) > 12 else "")
    raise ValueError(f"label {label!r} is not a label of {where}; its labels are: {shown}")


def _resolved_label(model: ScoringModel, label: str) -> str:
    return resolve_label(load_scoring_model(model.path), label, model.path)


def with_model_version(cfg: QualityScoreConfig) -> QualityScoreConfig:
    """Check the model and label up front (loading the model once) and record the model's
    content hash in the config, so resume re-scores shards when the model changes."""
    model = locate_model(cfg.model_path)
    _resolved_label(model, cfg.label)
    return cfg.model_copy(update={"model_version": model.version()})


def score_table(table: pa.Table, cfg: QualityScoreConfig) -> StageOutput:
    """Add the score column; with a threshold, rows below it go to rejected with a reason."""
    model = locate_model(cfg.model_path)
    label = _resolved_label(model, cfg.label)
    max_chars = cfg.max_chars if cfg.max_chars is not None else model.max_chars
    lowercase = cfg.lowercase if cfg.lowercase is not None else model.lowercase
    lines = prepare_lines(table.column("text"), max_chars, lowercase)
    scores = label_probabilities(load_scoring_model(model.path), lines, label, cfg.batch_size)
    score = pa.array(scores, pa.float32())
    i = table.schema.get_field_index(cfg.column)
    scored = (table.set_column(i, cfg.column, score) if i >= 0
              else table.append_column(cfg.column, score))
    if cfg.threshold is None:
        return StageOutput(kept=scored, rejected=_empty_rejected(scored),
                           rows_in=table.num_rows)
    drop = pc.less(score, cfg.threshold)
    low = score.filter(drop)
    n = len(low)
    detail = pc.binary_join_element_wise(pc.cast(pc.round(low, 3), pa.string()),
                                         f"< {cfg.threshold:g}", " ")
    rejected = (scored.filter(drop)
                .append_column("reject_stage", pa.repeat(pa.scalar(STAGE_NAME), n))
                .append_column("reject_reason", pa.repeat(pa.scalar(LOW_QUALITY), n))
                .append_column("reject_detail", detail))
    return StageOutput(kept=scored.filter(pc.invert(drop)), rejected=rejected,
                       rows_in=table.num_rows)


def _empty_rejected(table: pa.Table) -> pa.Table:
    empty = table.slice(0, 0)
    for name in ("reject_stage", "reject_reason", "reject_detail"):
        empty = empty.append_column(name, pa.array([], pa.string()))
    return empty


def score_unit(unit: WorkUnit, cfg: QualityScoreConfig) -> StageOutput:
    """One upstream documents shard in, the same shard with the score column out."""
    (path,) = unit.inputs
    return score_table(read_shard(path), cfg)


QUALITY_SCORE = Stage(name=STAGE_NAME, version="1", output_kind=DOCUMENTS, process=score_unit)
