"""Tokenizer training: byte-level BPE on documents shards, saved as a Hugging Face folder.

:func:`train_tokenizer` streams the ``text`` column of documents shards (one Arrow record
batch at a time, only that column decompressed) into Hugging Face ``tokenizers``' BPE
trainer: one regex split (words with their leading space, digits in groups of three,
punctuation runs, line breaks; ``curate.tokenize_fast.PRETOKENIZE_PATTERN``, which needs no
look-ahead so the tokenize stage can reproduce it vectorised) then byte-level symbols and a
byte-level decoder, so any UTF-8 text encodes and decodes back exactly and nothing is ever
unknown. The special tokens
are added first, so their ids are small and stable (0 = BOS, 1 = EOS, 2 = PAD, 3/4 = the
ChatML turn markers), and training is deterministic: the same shards and config give a
byte-identical ``tokenizer.json``.

The output folder is what ``transformers.PreTrainedTokenizerFast.save_pretrained`` writes
(``tokenizer.json``, ``tokenizer_config.json``, the ChatML chat template), so
``AutoTokenizer.from_pretrained(folder)`` loads it offline, plus ``sievelm_tokenizer.json``:
vocabulary size, special token ids, the config, and the sha256 of every shard it read.

:func:`load_tokenizer` opens such a folder, or any local Hugging Face tokenizer folder with a
``tokenizer.json`` (special tokens then come from ``tokenizer_config.json`` /
``special_tokens_map.json``), for the fast encoding path used by the tokenize stage.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from curate.config import StageConfig
from schemas import DOCUMENTS, sha256_file, shard_paths
from schemas.manifest import read_manifest
from schemas.shards import replaced_folder
from schemas.version import __version__

STAGE_NAME = "tokenizer"
TOKENIZER_FILE = "tokenizer.json"
METADATA_FILE = "sievelm_tokenizer.json"
METADATA_FORMAT = 1
BYTE_ALPHABET = 256
"""ByteLevel's initial alphabet: one symbol per byte value, so no text is ever unknown."""
TRAIN_BATCH = 1024
"""Texts per batch handed to the trainer (does not change the result)."""
SPECIAL_ROLES = ("bos", "eos", "pad", "im_start", "im_end")
"""Special tokens in id order: ``<|begin_of_text|>`` is 0, ``<|im_end|>`` is 4."""


def chatml_template(im_start: str = "<|im_start|>", im_end: str = "<|im_end|>",
                    bos: bool = False) -> str:
    """The ChatML chat template: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message and
    ``<|im_start|>assistant\\n`` with ``add_generation_prompt``; ``bos`` starts it with
    ``bos_token``. An assistant turn ends with ``im_end``, the end-of-turn token a model learns
    to emit (the SFT loss covers it)."""
    start, end = _jinja_string(im_start), _jinja_string(im_end)
    prompt = _jinja_string(f"{im_start}assistant\n")
    return (
        ("{{- bos_token }}" if bos else "")
        + "{%- for message in messages %}"
        + f"{{{{- {start} + message['role'] + '\\n' + message['content'] + {end} + '\\n' }}}}"
        + "{%- endfor %}"
        + f"{{%- if add_generation_prompt %}}{{{{- {prompt} }}}}{{%- endif %}}"
    )


def _jinja_string(text: str) -> str:
    """A Jinja string literal for ``text`` (quotes, backslashes and newlines escaped)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


class TokenizerConfig(StageConfig):
    """Vocabulary, special tokens, training text cap and chat template."""

    vocab_size: int = Field(8192, ge=BYTE_ALPHABET + len(SPECIAL_ROLES) + 1)
    """Target size including the 256 byte symbols and the special tokens; a small corpus may
    end with fewer (no pair left that occurs ``min_frequency`` times)."""
    min_frequency: int = Field(2, ge=1)
    """A pair must occur this often to be merged."""
    bos_token: str = "<|begin_of_text|>"
    eos_token: str = "<|end_of_text|>"
    pad_token: str = "<|pad|>"
    im_start_token: str = "<|im_start|>"
    im_end_token: str = "<|im_end|>"
    """ChatML turn markers; ``im_end`` ends every turn (the end-of-turn token)."""
    extra_special_tokens: list[str] = []
    """More special tokens (e.g. reserved ones), ids right after the five above."""
    max_docs: int | None = Field(None, ge=1)
    """Train on at most this many documents (in input order); None = all."""
    max_chars: int | None = Field(None, ge=1)
    """Train on at most this many characters (the last document is cut); None = all."""
    chat_template: str | None = None
    """Jinja chat template; None = ChatML with the turn markers above (see
    :func:`chatml_template`), starting with ``bos_token`` when ``add_bos``."""
    add_bos: bool = False
    """Documents get only EOS at the end by default; True also puts BOS first (and the
    Hugging Face tokenizer then adds BOS when called with special tokens)."""

    @model_validator(mode="after")
    def _distinct_specials(self) -> TokenizerConfig:
        tokens = self.special_tokens()
        if any(not t for t in tokens):
            raise ValueError("special tokens must not be empty")
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"special tokens must be distinct: {tokens}")
        if self.vocab_size <= BYTE_ALPHABET + len(tokens):
            raise ValueError(f"vocab_size {self.vocab_size} leaves no room for merges: the byte "
                             f"alphabet ({BYTE_ALPHABET}) and {len(tokens)} special tokens "
                             "already take that many ids")
        return self

    def special_tokens(self) -> list[str]:
        """All special tokens in id order."""
        return [self.bos_token, self.eos_token, self.pad_token, self.im_start_token,
                self.im_end_token, *self.extra_special_tokens]

    def effective_chat_template(self) -> str:
        if self.chat_template is not None:
            return self.chat_template
        return chatml_template(self.im_start_token, self.im_end_token, bos=self.add_bos)


@dataclass(frozen=True)
class TokenizerInfo:
    """What :func:`train_tokenizer` made."""

    path: Path
    vocab_size: int
    special_ids: dict[str, int]
    """role (bos, eos, pad, im_start, im_end) or extra token -> id"""
    training_docs: int
    training_chars: int
    shards: list[dict[str, Any]]
    """the shards read: path, sha256, docs, chars"""
    seconds: float

    def summary(self) -> str:
        ids = "  ".join(f"{k} {v}" for k, v in self.special_ids.items())
        secs = max(self.seconds, 1e-9)
        return "\n".join([
            f"tokenizer -> {self.path}",
            f"  vocab    {self.vocab_size:,} tokens",
            f"  special  {ids}",
            f"  trained  on {self.training_docs:,} documents, {self.training_chars:,} characters "
            f"from {len(self.shards)} shard(s)",
            f"  time     {self.seconds:.2f} s  ({self.training_chars / secs:,.0f} chars/s)",
        ])


@dataclass(frozen=True)
class LoadedTokenizer:
    """A tokenizer folder opened for encoding: the raw ``tokenizers.Tokenizer`` and the ids a
    token stream needs."""

    path: Path
    tokenizer: Any
    """``tokenizers.Tokenizer`` from tokenizer.json (the fast path: ``encode_batch_fast``)."""
    vocab_size: int
    """Size of the id space: every id is below it."""
    eos_id: int | None
    bos_id: int | None
    pad_id: int | None
    token_dtype: np.dtype
    """The narrowest unsigned dtype holding every id."""
    add_bos: bool = False
    """Whether documents are meant to start with BOS (our config, or what the tokenizer's
    post-processor does for a foreign folder)."""
    end_of_turn_id: int | None = None
    """The token that ends a chat turn (``<|im_end|>`` for ours; None when unknown)."""
    special_ids: dict[str, int] = field(default_factory=dict)
    """Every special token of the tokenizer -> id."""
    metadata: dict[str, Any] | None = None
    """``sievelm_tokenizer.json`` when the folder has one."""


def token_dtype_for(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    if vocab_size <= 1 << 32:
        return np.dtype(np.uint32)
    raise ValueError(f"vocab_size {vocab_size} does not fit 32-bit token ids")


# --- training text ---------------------------------------------------------------------------

def training_shards(inputs: list[Path]) -> list[Path]:
    """Documents shards from stage folders (through their manifest) and shard files."""
    shards: list[Path] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            manifest = read_manifest(path)
            if manifest is None:
                raise FileNotFoundError(f"{path} has no _manifest.json; pass a documents stage "
                                        "folder or .arrow shard files")
            if manifest.kind != DOCUMENTS.name:
                raise ValueError(f"{path} holds {manifest.kind} shards, not {DOCUMENTS.name}")
            shards.extend(shard_paths(path))
        elif path.is_file():
            shards.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not shards:
        raise ValueError(f"no documents shards in {', '.join(map(str, inputs))}")
    return shards


class TextStream:
    """Batches of texts from shards, one record batch at a time, within the caps; counts what
    it handed out (read the counts after the trainer consumed it)."""

    def __init__(self, shards: list[Path], max_docs: int | None = None,
                 max_chars: int | None = None, batch: int = TRAIN_BATCH):
        self.shards, self.max_docs, self.max_chars, self.batch = shards, max_docs, max_chars, batch
        self.docs = self.chars = 0
        self.used: list[dict[str, Any]] = []

    def _full(self) -> bool:
        return ((self.max_docs is not None and self.docs >= self.max_docs)
                or (self.max_chars is not None and self.chars >= self.max_chars))

    def _texts(self, path: Path) -> Iterator[list[str]]:
        with pa.memory_map(str(path), "r") as source:
            index = pa.ipc.open_file(source).schema.get_field_index("text")
            if index < 0:
                raise ValueError(f"{path}: no text column; is it a documents shard?")
            options = pa.ipc.IpcReadOptions(included_fields=[index], use_threads=False)
            reader = pa.ipc.open_file(source, options=options)
            for i in range(reader.num_record_batches):
                column = reader.get_batch(i).column(0)
                for start in range(0, len(column), self.batch):
                    yield [t for t in column.slice(start, self.batch).to_pylist() if t]

    def __iter__(self) -> Iterator[list[str]]:
        for path in self.shards:
            if self._full():
                return
            entry = {"path": str(path.resolve()), "docs": 0, "chars": 0}
            self.used.append(entry)
            for texts in self._texts(path):
                if self.max_docs is not None:
                    texts = texts[:self.max_docs - self.docs]
                if self.max_chars is not None:
                    texts = self._cut(texts, self.max_chars - self.chars)
                chars = sum(map(len, texts))
                self.docs += len(texts)
                self.chars += chars
                entry["docs"] += len(texts)
                entry["chars"] += chars
                if texts:
                    yield texts
                if self._full():
                    return

    @staticmethod
    def _cut(texts: list[str], budget: int) -> list[str]:
        out = []
        for text in texts:
            if budget <= 0:
                break
            out.append(text[:budget])
            budget -= len(out[-1])
        return out


# --- training --------------------------------------------------------------------------------

def build_tokenizer(cfg: TokenizerConfig) -> tuple[Any, Any]:
    """(an untrained byte-level BPE ``Tokenizer``, its ``BpeTrainer``)."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    from curate.tokenize_fast import PRETOKENIZE_PATTERN

    tok = Tokenizer(models.BPE())
    # one regex split (no look-ahead, so it can be reproduced vectorised: tokenize_fast),
    # then bytes to symbols
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    if cfg.add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cfg.bos_token} $A", pair=f"{cfg.bos_token} $A {cfg.bos_token}:1 $B:1",
            special_tokens=[(cfg.bos_token, 0)])
    else:  # set explicitly: transformers 5 would otherwise install its own template
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
        special_tokens=cfg.special_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    return tok, trainer


def _special_ids(tok: Any, cfg: TokenizerConfig) -> dict[str, int]:
    names = [*SPECIAL_ROLES, *cfg.extra_special_tokens]
    ids = {name: tok.token_to_id(token) for name, token in zip(names, cfg.special_tokens(),
                                                               strict=True)}
    expected = dict(zip(names, range(len(names)), strict=True))
    if ids != expected:  # the trainer adds special tokens first, in order
        raise RuntimeError(f"special token ids {ids} are not the expected {expected}")
    return ids


def _check_output(out_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier tokenizer of ours."""
    if out_dir.exists() and (not out_dir.is_dir() or (
            any(out_dir.iterdir()) and not (out_dir / METADATA_FILE).is_file())):
        raise ValueError(f"{out_dir} exists and is not a tokenizer folder written by curate; "
                         "refusing to overwrite it")


def _make_portable(path: Path) -> None:
    """Write tokenizer_config.json so transformers 4.x and 5.x both load the folder.

    transformers 5 names the class ``TokenizersBackend`` and lists extra special tokens as
    ``extra_special_tokens`` (a list), which 4.x cannot read (it has no such class and expects
    a dict there); both read ``PreTrainedTokenizerFast`` with ``additional_special_tokens``,
    and the chat template inline (``save_jinja_files=False``; 4.x before 4.51 reads no
    chat_template.jinja).
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        config["additional_special_tokens"] = extra
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def train_tokenizer(inputs: list[Path], out_dir: Path, cfg: TokenizerConfig | None = None,
                    progress: bool = False) -> TokenizerInfo:
    """Train byte-level BPE on the documents in ``inputs`` (stage folders or shard files) and
    save a Hugging Face tokenizer folder with ``sievelm_tokenizer.json`` to ``out_dir``."""
    import tokenizers
    import transformers

    cfg = cfg or TokenizerConfig()
    out_dir = Path(out_dir)
    shards = training_shards(inputs)
    _check_output(out_dir)  # before the work, not only after it
    t0 = time.perf_counter()
    tok, trainer = build_tokenizer(cfg)
    if progress and sys.stderr.isatty():  # its bars print blank lines into a log file
        trainer.show_progress = True
    stream = TextStream(shards, cfg.max_docs, cfg.max_chars)
    tok.train_from_iterator(stream, trainer)
    if stream.docs == 0:
        raise ValueError(f"no text to train on in {', '.join(map(str, inputs))}")
    special_ids = _special_ids(tok, cfg)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    template = cfg.effective_chat_template()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=cfg.bos_token, eos_token=cfg.eos_token,
        pad_token=cfg.pad_token, chat_template=template,
        additional_special_tokens=[cfg.im_start_token, cfg.im_end_token,
                                   *cfg.extra_special_tokens])
    for entry in stream.used:
        entry["sha256"] = sha256_file(Path(entry["path"]))
    metadata = {
        "format": METADATA_FORMAT,
        "library_version": __version__,
        "tokenizers_version": tokenizers.__version__,
        "transformers_version": transformers.__version__,
        "model": "byte-level BPE",
        "vocab_size": vocab_size,
        "token_dtype": token_dtype_for(vocab_size).name,
        "special_tokens": {name: {"token": token, "id": special_ids[name]} for name, token in
                           zip(special_ids, cfg.special_tokens(), strict=True)},
        "eos_id": special_ids["eos"],
        "bos_id": special_ids["bos"],
        "pad_id": special_ids["pad"],
        "end_of_turn_id": special_ids["im_end"],
        "add_bos": cfg.add_bos,
        "config": cfg.model_dump(mode="json"),
        "config_hash": cfg.config_hash(),
        "chat_template": template,
        "training": {"docs": stream.docs, "chars": stream.chars, "shards": stream.used},
    }
    with replaced_folder(out_dir) as tmp:
        fast.save_pretrained(str(tmp), save_jinja_files=False)
        _make_portable(tmp / "tokenizer_config.json")
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False)
                                         + "\n")
    return TokenizerInfo(path=out_dir, vocab_size=vocab_size, special_ids=special_ids,
                         training_docs=stream.docs, training_chars=stream.chars,
                         shards=stream.used, seconds=time.perf_counter() - t0)


# --- loading ---------------------------------------------------------------------------------

def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _hf_special_tokens(folder: Path) -> dict[str, str]:
    """bos/eos/pad token strings from tokenizer_config.json, then special_tokens_map.json."""
    found: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = _read_json(folder / name)
        for role in ("bos", "eos", "pad"):
            text = _token_text(data.get(f"{role}_token"))
            if text is not None and role not in found:
                found[role] = text
    return found


def load_tokenizer(folder: Path) -> LoadedTokenizer:
    """Open a tokenizer folder: ours (``sievelm_tokenizer.json``) or any local Hugging Face
    tokenizer folder with a ``tokenizer.json``."""
    from tokenizers import Tokenizer

    folder = Path(folder).expanduser()
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no {TOKENIZER_FILE}: not a tokenizer folder (expected the output of "
            "`curate tokenizer train` or a Hugging Face tokenizer saved with a fast tokenizer)")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        raise ValueError(f"{path}: not a loadable tokenizer ({exc})") from None
    special_ids = {t.content: i for i, t in sorted(tok.get_added_tokens_decoder().items())
                   if t.special}
    ids = tok.get_vocab(with_added_tokens=True).values()
    vocab_size = max(tok.get_vocab_size(with_added_tokens=True), max(ids, default=-1) + 1)
    metadata = _read_json(folder / METADATA_FILE) or None
    if metadata is not None:
        roles = {role: entry["token"] for role, entry in metadata["special_tokens"].items()}
        for role, entry in metadata["special_tokens"].items():
            if tok.token_to_id(entry["token"]) != entry["id"]:
                raise ValueError(f"{folder}: {METADATA_FILE} says {entry['token']!r} is id "
                                 f"{entry['id']}, {TOKENIZER_FILE} says "
                                 f"{tok.token_to_id(entry['token'])}; was {role} changed?")
        add_bos = bool(metadata.get("add_bos", False))
        end_of_turn = metadata.get("end_of_turn_id")
    else:
        roles = _hf_special_tokens(folder)
        end_of_turn = None
        add_bos = False
    bos_id, eos_id, pad_id = (tok.token_to_id(roles[r]) if r in roles else None
                              for r in ("bos", "eos", "pad"))
    if metadata is None and bos_id is not None:  # does its post-processor put BOS first?
        probe = tok.encode("", add_special_tokens=True).ids
        add_bos = bool(probe) and probe[0] == bos_id
    return LoadedTokenizer(path=folder, tokenizer=tok, vocab_size=vocab_size, eos_id=eos_id,
                           bos_id=bos_id, pad_id=pad_id, token_dtype=token_dtype_for(vocab_size),
                           add_bos=add_bos, end_of_turn_id=end_of_turn, special_ids=special_ids,
                           metadata=metadata)
