"""Record kinds: the versioned Arrow schemas every stage reads and writes.

A kind is declared as a list of columns rather than a bare ``pa.Schema`` because the
contract needs more than types: which columns may be absent, which may hold nulls, which
alternative types are equivalent (token ids are uint16 or uint32, whichever the vocabulary
allows) and whether a stage may add signal columns of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

MESSAGE = pa.struct([pa.field("role", pa.string(), nullable=False),
                     pa.field("content", pa.string(), nullable=False)])
MESSAGES = pa.list_(pa.field("item", MESSAGE, nullable=False))
TOKEN_IDS = (pa.list_(pa.uint16()), pa.list_(pa.uint32()), pa.list_(pa.int32()))
TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Column:
    """One column of a record kind; ``types[0]`` is the canonical type."""

    name: str
    types: tuple[pa.DataType, ...]
    nullable: bool = True
    optional: bool = False
    doc: str = ""

    @property
    def type(self) -> pa.DataType:
        return self.types[0]

    def accepts(self, dtype: pa.DataType) -> bool:
        return any(dtype.equals(t) for t in self.types)


@dataclass(frozen=True)
class RecordKind:
    """A named, versioned record layout; bump ``version`` whenever columns change meaning."""

    name: str
    version: str
    columns: tuple[Column, ...]
    allow_extra: bool = False
    doc: str = ""
    compress: bool = True

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def required(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.optional)

    def arrow_schema(self) -> pa.Schema:
        """The canonical schema (optional columns included), tagged with kind and version."""
        fields = [pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns]
        return pa.schema(fields, metadata={"record_kind": self.name, "kind_version": self.version})


def _c(name: str, dtype: pa.DataType | tuple[pa.DataType, ...], nullable: bool = True,
       optional: bool = False, doc: str = "") -> Column:
    types = dtype if isinstance(dtype, tuple) else (dtype,)
    return Column(name, types, nullable=nullable, optional=optional, doc=doc)


_DOCUMENT_COLUMNS = (
    _c("id", pa.string(), nullable=False, doc="stable document id, unique within a dataset"),
    _c("text", pa.string(), nullable=False, doc="the document text (UTF-8)"),
    _c("url", pa.string(), doc="source URL, normalised, when the document came from the web"),
    _c("source", pa.string(), nullable=False, doc="name of the source (dump, crawl, dataset)"),
    _c("source_path", pa.string(), optional=True,
       doc="raw file the document came from, relative to the input root"),
    _c("source_row", pa.int64(), optional=True,
       doc="1-based line or row of the document in its raw file"),
    _c("title", pa.string(), optional=True, doc="title from the source or the extractor"),
    _c("lang", pa.string(), optional=True, doc="ISO 639 language code from language ID"),
    _c("lang_score", pa.float32(), optional=True, doc="language ID confidence in [0, 1]"),
    _c("fetched_at", TIMESTAMP, optional=True, doc="when the page was fetched (UTC)"),
    _c("metadata", pa.string(), optional=True,
       doc="JSON object with whatever else the source carried"),
)

DOCUMENTS = RecordKind(
    "documents", "1.0", _DOCUMENT_COLUMNS, allow_extra=True,
    doc="Curated text documents. Stages add signal columns (scores, counts) beside these.",
)


def _as_nullable(col: Column) -> Column:
    return Column(col.name, col.types, nullable=True, optional=col.name != "id", doc=col.doc)


REJECTED = RecordKind(
    "rejected", "1.0",
    (
        *(_as_nullable(c) if c.name != "id" else c for c in _DOCUMENT_COLUMNS),
        _c("reject_stage", pa.string(), nullable=False, doc="stage that dropped the row"),
        _c("reject_reason", pa.string(), nullable=False,
           doc="short machine-readable reason, e.g. invalid_json, empty_text"),
        _c("reject_detail", pa.string(), doc="human-readable detail (parser error, values)"),
        _c("raw", pa.string(), optional=True,
           doc="the raw input (escaped, truncated) when it could not be parsed into a document"),
    ),
    allow_extra=True,
    doc="Rows a stage dropped, with the stage and the reason; document columns where known.",
)

SFT = RecordKind("sft", "1.0", (
    _c("id", pa.string(), nullable=False),
    _c("messages", MESSAGES, nullable=False, doc="conversation turns, {role, content}"),
    _c("source", pa.string(), nullable=False),
    _c("split", pa.string(), doc="train / validation / test"),
    _c("metadata", pa.string(), optional=True, doc="JSON object"),
), allow_extra=True, doc="Instruction / chat conversations for supervised fine-tuning.")

PREFERENCE = RecordKind("preference", "1.0", (
    _c("id", pa.string(), nullable=False),
    _c("prompt", MESSAGES, nullable=False, doc="shared conversation prefix"),
    _c("chosen", MESSAGES, nullable=False, doc="preferred continuation"),
    _c("rejected", MESSAGES, nullable=False, doc="dispreferred continuation"),
    _c("score_chosen", pa.float32(), optional=True),
    _c("score_rejected", pa.float32(), optional=True),
    _c("source", pa.string(), nullable=False),
    _c("split", pa.string()),
    _c("metadata", pa.string(), optional=True, doc="JSON object"),
), allow_extra=True, doc="Preference pairs for reward modelling, DPO and RL.")

PRETRAIN_TOKENS = RecordKind("pretrain_tokens", "1.0", (
    _c("input_ids", TOKEN_IDS, nullable=False,
       doc="a packed row of fixed length; the narrowest id type the vocabulary allows"),
    _c("segment_starts", pa.list_(pa.int32()), nullable=False,
       doc="offsets in the row where a document (segment) begins"),
    _c("segment_doc_ids", pa.list_(pa.string()), nullable=False,
       doc="document id of each segment, aligned with segment_starts"),
), compress=False, doc="Packed pre-training rows with document boundaries; uncompressed for mmap.")

TOKEN_INDEX = RecordKind("token_index", "1.0", (
    _c("doc_id", pa.string(), nullable=False, doc="the document's id"),
    _c("url", pa.string(), doc="the document's URL, when it has one"),
    _c("source", pa.string(), doc="the document's source"),
    _c("row", pa.int64(), nullable=False, doc="packed row holding the document's first token"),
    _c("offset", pa.int32(), nullable=False, doc="position of that token in the row"),
    _c("length", pa.int64(), nullable=False,
       doc="tokens of the document in the stream, end-of-document token included"),
    _c("truncated", pa.bool_(), nullable=False,
       doc="the document was cut to the configured maximum length"),
), compress=False,
   doc="Where each document of a token shard lies: (row, offset, length) in the packed rows.")

SFT_TOKENS = RecordKind("sft_tokens", "1.1", (
    _c("id", pa.string(), nullable=False),
    _c("input_ids", TOKEN_IDS, nullable=False),
    _c("loss_mask", pa.list_(pa.uint8()), nullable=False,
       doc="1 where the token is an assistant token (end-of-turn included), else 0"),
    _c("split", pa.string()),
    _c("assistant_masks", pa.list_(pa.uint8()), optional=True,
       doc="a copy of loss_mask under the name TRL's SFTTrainer reads"),
    _c("seq_lengths", pa.list_(pa.int32()), optional=True,
       doc="packed rows: tokens of each conversation in the row, in order (TRL's name); "
           "positions restart at each"),
), compress=False, doc="Chat-templated conversations with the loss mask over assistant turns.")

PREFERENCE_TOKENS = RecordKind("preference_tokens", "1.1", (
    _c("id", pa.string(), nullable=False),
    _c("prompt_ids", TOKEN_IDS, nullable=False,
       doc="the prompt up to and including the reply's generation header"),
    _c("chosen_ids", TOKEN_IDS, nullable=False, doc="the preferred reply (end-of-turn included)"),
    _c("rejected_ids", TOKEN_IDS, nullable=False, doc="the dispreferred reply"),
    _c("split", pa.string()),
    _c("chosen_input_ids", TOKEN_IDS, optional=True,
       doc="prompt_ids + chosen_ids, for reward models (TRL RewardTrainer)"),
    _c("rejected_input_ids", TOKEN_IDS, optional=True, doc="prompt_ids + rejected_ids"),
    _c("truncated", pa.bool_(), optional=True,
       doc="the replies were cut to fit max_length"),
), compress=False, doc="Tokenized preference pairs: prompt, chosen and rejected ids.")

MINHASH_SIGNATURES = RecordKind("minhash_signatures", "1.0", (
    _c("id", pa.string(), nullable=False, doc="document id, aligned row by row with the shard"),
    _c("n_chars", pa.int64(), nullable=False, doc="length of the original text"),
    _c("score", pa.float64(), doc="the keep-rule score column's value, when one is configured"),
    _c("n_shingles", pa.int32(), nullable=False, doc="word n-gram shingles in the document"),
    _c("text_hash", pa.uint64(), doc="64-bit hash of the normalised text; null when empty"),
    _c("url_hash", pa.uint64(), doc="64-bit hash of the normalised URL; null without a URL"),
    _c("minhash", pa.list_(pa.uint32()), nullable=False,
       doc="MinHash signature (bands x rows values), equal to datasketch MinHash.hashvalues"),
), compress=False,
   doc="Per-document dedup keys of one documents shard, in the shard's row order; "
       "uncompressed, as hash values do not compress.")

DUP_CLUSTERS = RecordKind("dup_clusters", "1.0", (
    _c("row", pa.int64(), nullable=False, doc="0-based row of the document in its shard"),
    _c("id", pa.string(), nullable=False, doc="document id"),
    _c("dup_cluster", pa.string(), nullable=False, doc="id of the cluster's kept document"),
    _c("dup_cluster_size", pa.int64(), nullable=False, doc="documents in the cluster"),
    _c("duplicate_of", pa.string(), doc="the kept document's id; null for the kept one"),
    _c("reason", pa.string(),
       doc="exact_duplicate, url_duplicate or near_duplicate; null for the kept one"),
), doc="Members of duplicate clusters (size > 1) in one documents shard, and their fate.")

KINDS: dict[str, RecordKind] = {k.name: k for k in (
    DOCUMENTS, REJECTED, SFT, PREFERENCE, PRETRAIN_TOKENS, SFT_TOKENS, PREFERENCE_TOKENS,
    MINHASH_SIGNATURES, DUP_CLUSTERS, TOKEN_INDEX)}


def get_kind(name: str) -> RecordKind:
    """Look a kind up by name, with the known names in the error."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown record kind {name!r}; known: {', '.join(KINDS)}") from None
