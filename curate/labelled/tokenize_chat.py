"""Chat tokenization: ``sft`` conversations and ``preference`` pairs to token ids for training.

A conversation is rendered with a chat template (the tokenizer's, or ``chat_template``) and cut
into *pieces* wherever the loss mask changes: the text before an assistant reply (its header,
``<|im_start|>assistant\\n``, included) is one piece, the reply up to and including its
end-of-turn token another. Each piece is encoded on its own and the ids are laid back to back,
so the ids of a prompt are exactly the ids the model sees at generation time (a prefix of the
prompt + response ids, by construction) and the mask is exact: 1 on every token the model
should learn to produce (each assistant reply and its end-of-turn token), 0 elsewhere. No BOS
is added beyond what the template writes itself (``add_special_tokens`` is never used).

Two renderers give the pieces. For our ChatML template (``curate tokenizer train``'s, with or
without BOS) the pieces are built for a whole shard at once with Arrow and numpy, the turn
markers are inserted as ids and every text (content, role) is encoded as plain text, so a
message that contains ``<|im_end|>`` cannot end its turn early. Any other template is rendered
with ``transformers`` per conversation prefix (``messages[:k]`` with the generation prompt, then
``messages[:k+1]``): a template whose renders are not prefixes of each other is refused per row
(``template_not_incremental``), and as its special tokens are parsed from text, a message
containing one is refused (``special_token_in_content``).

``max_length`` is enforced explicitly: ``truncation: drop`` rejects longer rows (``too_long``),
``truncate`` keeps the first ``max_length`` tokens (for pairs: the whole prompt and the start
of both replies) and counts them (``truncated`` in ``token_index/`` and in preference rows);
a row left with nothing to learn is rejected as ``too_long`` either way. SFT rows can be packed
(best-fit decreasing, per split) into rows of at most ``max_length`` tokens whose
``seq_lengths`` give the boundaries. Columns are named as TRL reads pre-tokenized data:
``input_ids`` + ``assistant_masks`` (+ ``seq_lengths``) for SFTTrainer as the shards are, and
``chosen_input_ids``/``rejected_input_ids`` (prompt + reply) for RewardTrainer through
:func:`trl_dataset`; ``prompt_ids``/``chosen_ids``/``rejected_ids`` are the names of TRL's DPO
collator.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.config import StageConfig
from curate.runner import RunReport, Stage, StageOutput, WorkUnit, plan_shards, run_stage
from schemas import PREFERENCE, PREFERENCE_TOKENS, SFT, SFT_TOKENS, TOKEN_INDEX, read_shard

SFT_STAGE = "sft_tokenize"
PREFERENCE_STAGE = "preference_tokenize"
INDEX_DIR = "token_index"
META_NAME = "_tokenizer.json"
ASSISTANT = "assistant"


class ChatTokenizeConfig(StageConfig):
    """Tokenizer, template and length limit shared by both stages."""

    tokenizer: str
    """A tokenizer folder (``curate tokenizer train`` output or a Hugging Face folder with a
    tokenizer.json and a chat template)."""
    chat_template: str | None = None
    """Jinja chat template to use instead of the tokenizer's own."""
    max_length: int = Field(2048, ge=2)
    """Most tokens in a row (for pairs: prompt + the longer reply)."""
    truncation: Literal["drop", "truncate"] = "drop"
    """Longer rows: ``drop`` rejects them as ``too_long``; ``truncate`` keeps the first
    ``max_length`` tokens (pairs keep the prompt and cut both replies) and counts them."""
    trl_columns: bool = True
    """Also write the columns TRL reads under its names: ``assistant_masks`` (a copy of
    ``loss_mask``) and ``chosen_input_ids``/``rejected_input_ids`` (prompt + reply)."""
    batch_size: int = Field(1000, ge=1)
    """Texts per ``encode_batch_fast`` call when the vectorised encoder does not apply."""
    tokenizer_sha256: str = ""
    """Filled in by the run functions from tokenizer.json (resume key)."""
    template_sha256: str = ""
    """Filled in by the run functions from the effective chat template (resume key)."""


class SftTokenizeConfig(ChatTokenizeConfig):
    packing: bool = False
    """Pack conversations (best-fit decreasing, within each split) into rows of at most
    ``max_length`` tokens; ``seq_lengths`` gives each row's conversation lengths."""


class PreferenceTokenizeConfig(ChatTokenizeConfig):
    pass


# --- the template ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatFormat:
    """How conversations become pieces for one tokenizer and template."""

    template: str
    chatml: bool
    """The template is our ChatML: pieces are built vectorised, markers inserted as ids."""
    im_start_id: int | None = None
    im_end_id: int | None = None
    bos_id: int | None = None
    """Set when the (ChatML) template starts with BOS."""
    special_texts: tuple[str, ...] = ()
    """Special tokens' texts, longest first: the end of an assistant turn in other templates."""
    special_ids: dict[str, int] = field(default_factory=dict)
    """Text -> id of the special tokens a render may be split at (empty when some special token
    strips the whitespace around it, so the tokenizer must see the whole render)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def tokenizer_template(folder: Path) -> str | None:
    """The chat template a Hugging Face tokenizer folder carries (tokenizer_config.json or
    chat_template.jinja), or None."""
    template = _read_json(Path(folder) / "tokenizer_config.json").get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template
                         if isinstance(t, dict) and t.get("name") == "default"), None)
    if isinstance(template, str):
        return template
    jinja = Path(folder) / "chat_template.jinja"
    return jinja.read_text(encoding="utf-8") if jinja.is_file() else None


def effective_template(cfg: ChatTokenizeConfig) -> str:
    template = cfg.chat_template or tokenizer_template(Path(cfg.tokenizer))
    if not template:
        raise ValueError(f"the tokenizer {cfg.tokenizer} has no chat template; set chat_template")
    return template


def _token_text(tok: Any, role: str, fallback: str) -> str | None:
    meta = (tok.metadata or {}).get("special_tokens", {})
    if role in meta:
        return meta[role]["token"]
    return fallback if fallback in tok.special_ids else None


def chat_format(tok: Any, template: str) -> ChatFormat:
    """Recognise our ChatML template (vectorised path) or fall back to rendering ``template``."""
    from curate.tokenizer import chatml_template

    specials = tuple(sorted(tok.special_ids, key=len, reverse=True))
    added = tok.tokenizer.get_added_tokens_decoder().values()
    strips = any(t.lstrip or t.rstrip or t.single_word for t in added if t.special)
    split_at = {} if strips else {t: tok.special_ids[t] for t in specials}
    start = _token_text(tok, "im_start", "<|im_start|>")
    end = _token_text(tok, "im_end", "<|im_end|>")
    if start is not None and end is not None:
        ids = tok.special_ids
        if template == chatml_template(start, end, bos=False):
            return ChatFormat(template, True, ids[start], ids[end], None, specials)
        if template == chatml_template(start, end, bos=True) and tok.bos_id is not None:
            return ChatFormat(template, True, ids[start], ids[end], tok.bos_id, specials)
    return ChatFormat(template, False, special_texts=specials, special_ids=split_at)


# --- pieces ----------------------------------------------------------------------------------

@dataclass
class Pieces:
    """Conversations as pieces, in conversation order: a text to encode or one fixed id each."""

    conv: np.ndarray
    """Conversation of each piece (non-decreasing)."""
    text: pa.Array
    """Text of each piece ("" for fixed ids)."""
    token: np.ndarray
    """Fixed id of each piece, -1 for text pieces."""
    mask: np.ndarray
    """uint8: the piece's tokens are trained on."""
    turn_piece: np.ndarray
    """Per message (all conversations' messages back to back): the piece where its trained
    part starts, -1 for messages that are not the assistant's."""
    plain: bool
    """Encode the texts with special tokens as plain text (markers are fixed ids)."""
    errors: dict[int, tuple[str, str]]
    """Conversations that could not be rendered: reason, detail."""


def _excl_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x), dtype=np.int64)
    np.cumsum(x[:-1], out=out[1:])
    return out


def _message_parts(messages: pa.ListArray) -> tuple[np.ndarray, pa.Array, pa.Array, np.ndarray]:
    """(messages per conversation, role, content, is-assistant) of a messages column."""
    lengths = pc.fill_null(pc.list_value_length(messages), 0).to_numpy().astype(np.int64)
    flat = messages.flatten()
    role, content = flat.field("role"), flat.field("content")
    is_assistant = np.asarray(pc.fill_null(pc.equal(role, ASSISTANT), False), dtype=bool)
    return lengths, role, content, is_assistant


def chatml_pieces(messages: pa.ListArray, fmt: ChatFormat) -> Pieces:
    """ChatML for a whole column at once: per conversation an optional BOS, then per message
    ``<|im_start|>`` | ``role\\n`` (+ content when not the assistant's) | assistant content |
    ``<|im_end|>`` | ``\\n``; the assistant's content and its ``<|im_end|>`` are trained on."""
    lengths, role, content, is_assistant = _message_parts(messages)
    n, m = len(lengths), len(role)
    conv_of_msg = np.repeat(np.arange(n, dtype=np.int64), lengths)
    base = conv_of_msg + 1 + 5 * np.arange(m, dtype=np.int64)  # first piece of each message
    heads = np.arange(n, dtype=np.int64) + 5 * _excl_cumsum(lengths)
    total = n + 5 * m
    assistant = pa.array(is_assistant)
    header = pc.binary_join_element_wise(role, pc.if_else(assistant, "", content), "\n")
    body = pc.if_else(assistant, content, "")
    pool = pa.concat_arrays([pa.array(["", "\n"]), header.cast(pa.string()),
                             body.cast(pa.string())])
    take = np.zeros(total, dtype=np.int64)
    take[base + 1] = 2 + np.arange(m)
    take[base + 2] = 2 + m + np.arange(m)
    take[base + 4] = 1
    token = np.full(total, -1, dtype=np.int64)
    if fmt.bos_id is not None:
        token[heads] = fmt.bos_id
    token[base] = fmt.im_start_id
    token[base + 3] = fmt.im_end_id
    mask = np.zeros(total, dtype=np.uint8)
    mask[base + 2] = is_assistant
    mask[base + 3] = is_assistant
    return Pieces(conv=np.repeat(np.arange(n, dtype=np.int64), 1 + 5 * lengths),
                  text=pool.take(pa.array(take)), token=token, mask=mask,
                  turn_piece=np.where(is_assistant, base + 2, -1), plain=True, errors={})


@functools.cache
def _hf_tokenizer(folder: str, _sha: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


RENDER_BATCH = 256
"""Conversations per batched ``apply_chat_template`` call (a failing batch is redone one by
one, so one bad conversation refuses only itself)."""


class _Refused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def render_batch(hf: Any, template: str, convs: list[list[dict]], generation: bool,
                 ) -> list[str | Exception]:
    """Each conversation rendered with ``template``, or the exception its render raised."""
    out: list[str | Exception] = []
    for start in range(0, len(convs), RENDER_BATCH):
        chunk = convs[start:start + RENDER_BATCH]
        try:
            out.extend(hf.apply_chat_template(chunk, tokenize=False, chat_template=template,
                                              add_generation_prompt=generation))
            continue
        except Exception:  # a template may raise anything (raise_exception, KeyError)
            pass
        for conv in chunk:
            try:
                out.extend(hf.apply_chat_template([conv], tokenize=False, chat_template=template,
                                                  add_generation_prompt=generation))
            except Exception as exc:
                out.append(exc)
    return out


def _spans(full: str, renders: list[tuple[int, str, str]], specials: tuple[str, ...],
           ) -> list[tuple[int, int, int]]:
    """Per assistant message k (with the renders of ``messages[:k]`` + generation prompt and
    of ``messages[:k+1]``): (k, start, end) of its trained text in ``full``, from the end of
    the generation prompt to the end of the first special token after it."""
    spans = []
    for k, prompt, upto in renders:
        if not (full.startswith(prompt) and full.startswith(upto) and len(upto) >= len(prompt)):
            raise _Refused("template_not_incremental",
                           f"rendering messages[:{k}] (with the generation prompt) or "
                           f"messages[:{k + 1}] is not a prefix of the whole conversation")
        segment = full[len(prompt):len(upto)]
        found = [(i, -len(s)) for s in specials if (i := segment.find(s)) >= 0]
        first, minus_len = min(found, default=(len(segment), 0))  # earliest, then longest
        start = len(prompt)
        if spans and start < spans[-1][2]:
            raise _Refused("template_not_incremental",
                           f"assistant message {k} overlaps the one before it")
        spans.append((k, start, start + first - minus_len))
    return spans


def template_pieces(messages: pa.ListArray, fmt: ChatFormat, hf: Any) -> Pieces:
    """Any template: every conversation, and per assistant message the prefix before it (with
    the generation prompt) and up to it, rendered in batches; the render is cut at the spans."""
    lengths, role, content, _ = _message_parts(messages)
    msg_start = _excl_cumsum(lengths)
    special = np.zeros(len(content), dtype=bool)
    for text in fmt.special_texts:
        special |= np.asarray(pc.fill_null(pc.match_substring(content, text), False), bool)
    convs = [m or [] for m in messages.to_pylist()]
    turns = [(i, k) for i, msgs in enumerate(convs) for k, msg in enumerate(msgs)
             if msg["role"] == ASSISTANT]
    full = render_batch(hf, fmt.template, convs, False)
    prompts = render_batch(hf, fmt.template, [convs[i][:k] for i, k in turns], True)
    uptos = render_batch(hf, fmt.template, [convs[i][:k + 1] for i, k in turns], False)
    per_conv: dict[int, list[tuple[int, Any, Any]]] = {}
    for (i, k), prompt, upto in zip(turns, prompts, uptos, strict=True):
        per_conv.setdefault(i, []).append((k, prompt, upto))
    conv: list[int] = []
    texts: list[str] = []
    mask: list[int] = []
    token: list[int] = []
    turn_piece = np.full(len(role), -1, dtype=np.int64)
    errors: dict[int, tuple[str, str]] = {}
    split = None
    if fmt.special_ids:  # special tokens become fixed ids, the text between them plain text
        pattern = re.compile("(" + "|".join(map(re.escape, fmt.special_ids)) + ")")
        split = pattern.split
    for i, rendered in enumerate(full):
        renders = per_conv.get(i, [])
        bad = np.flatnonzero(special[msg_start[i]:msg_start[i] + lengths[i]])
        failed = next((r for r in [rendered, *(x for _, p, u in renders for x in (p, u))]
                       if isinstance(r, Exception)), None)
        try:
            if len(bad):
                raise _Refused("special_token_in_content",
                               f"message {int(bad[0])} contains a special token's text")
            if failed is not None:
                raise _Refused("template_error", f"{type(failed).__name__}: {failed}"[:500])
            spans = _spans(rendered, renders, fmt.special_texts)
        except _Refused as exc:
            errors[i] = (exc.reason, exc.detail)
            continue
        cuts = [(0, 0, None)] + [(x, b, m) for k, start, end in spans
                                  for x, b, m in ((start, 1, k), (end, 0, None))]
        for (begin, bit, k), (stop, _, _) in zip(cuts, [*cuts[1:], (len(rendered), 0, None)],
                                                 strict=True):
            if k is not None:
                turn_piece[msg_start[i] + k] = len(texts)
            for part in (split(rendered[begin:stop]) if split else [rendered[begin:stop]]):
                conv.append(i)
                mask.append(bit)
                token.append(fmt.special_ids.get(part, -1) if split else -1)
                texts.append("" if token[-1] >= 0 else part)
    return Pieces(conv=np.asarray(conv, dtype=np.int64), text=pa.array(texts, pa.string()),
                  token=np.asarray(token, dtype=np.int64),
                  mask=np.asarray(mask, dtype=np.uint8), turn_piece=turn_piece,
                  plain=bool(split), errors=errors)


def pieces_for(messages: pa.ListArray, fmt: ChatFormat, cfg: ChatTokenizeConfig) -> Pieces:
    if fmt.chatml:
        return chatml_pieces(messages, fmt)
    return template_pieces(messages, fmt, _hf_tokenizer(cfg.tokenizer, cfg.tokenizer_sha256))


# --- encoding --------------------------------------------------------------------------------

@dataclass
class Encoded:
    """Conversations as ids: flat ids and mask, tokens per conversation, and each piece's first
    token as an offset within its conversation."""

    ids: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    starts: np.ndarray
    piece_offset: np.ndarray


@functools.cache
def _fast_path(folder: str, _sha: str) -> Any:
    from curate.tokenize_fast import fast_path_for

    return fast_path_for(Path(folder) / "tokenizer.json")


def encode_texts(tok: Any, texts: pa.Array, plain: bool, cfg: ChatTokenizeConfig,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(flat ids, ids per text), with no special tokens added; ``plain`` encodes special
    tokens' texts as plain text."""
    from curate.tokenize import _plain_encode
    from curate.tokenize_fast import encode_fast

    fast = _fast_path(cfg.tokenizer, cfg.tokenizer_sha256) if plain else None
    if fast is not None:
        return encode_fast(tok.tokenizer, texts, fast, parse_special=False)
    return _plain_encode(tok.tokenizer, texts.to_pylist(), cfg.batch_size, parse_special=not plain)


def encode_pieces(pieces: Pieces, n: int, tok: Any, cfg: ChatTokenizeConfig) -> Encoded:
    """Encode every text piece in one batch and lay all pieces' ids back to back."""
    is_text = pieces.token < 0
    text_at = np.flatnonzero(is_text)
    flat, text_len = encode_texts(tok, pieces.text.take(pa.array(text_at, pa.int64())),
                                  pieces.plain, cfg)
    piece_len = np.ones(len(is_text), dtype=np.int64)
    piece_len[text_at] = text_len
    piece_start = _excl_cumsum(piece_len)
    ids = np.empty(int(piece_len.sum()), dtype=np.int64)
    fixed = np.flatnonzero(~is_text)
    ids[piece_start[fixed]] = pieces.token[fixed]
    dest = np.repeat(piece_start[text_at] - _excl_cumsum(text_len), text_len)
    ids[dest + np.arange(len(flat))] = flat
    lengths = np.bincount(pieces.conv, weights=piece_len, minlength=n).astype(np.int64)
    starts = _excl_cumsum(lengths)
    return Encoded(ids=ids, mask=np.repeat(pieces.mask, piece_len), lengths=lengths,
                   starts=starts, piece_offset=piece_start - starts[pieces.conv])


def gather(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``flat[starts[i]:starts[i] + lengths[i]]`` for every i, back to back."""
    lengths = lengths.astype(np.int64)
    within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(_excl_cumsum(lengths),
                                                                        lengths)
    return flat[np.repeat(starts.astype(np.int64), lengths) + within]


def _sums(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per-segment sums of ``values`` cut into runs of ``lengths``."""
    owner = np.repeat(np.arange(len(lengths)), lengths.astype(np.int64))
    return np.bincount(owner, weights=values, minlength=len(lengths))


def list_array(values: np.ndarray, lengths: np.ndarray, dtype: Any = None) -> pa.ListArray:
    """A list column from flat values and list lengths (32-bit offsets, as Arrow's list)."""
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    if offsets[-1] >= 1 << 31:
        raise ValueError(f"{offsets[-1]:,} values in one shard: split the input into smaller "
                         "shards (list offsets are 32-bit)")
    offsets = offsets.astype(np.int32)
    arr = pa.array(values if dtype is None else values.astype(dtype))
    return pa.ListArray.from_arrays(pa.array(offsets), arr)


# --- rejections ------------------------------------------------------------------------------

class Rejections:
    """First reason per row wins; details are made only for the rows they describe."""

    def __init__(self, n: int):
        self.reason = np.full(n, None, dtype=object)
        self.detail = np.full(n, None, dtype=object)

    def add(self, rows: np.ndarray, reason: str, detail: Callable[[int], str]) -> None:
        for i in np.flatnonzero(rows & (self.reason == None)):  # noqa: E711 (object array)
            self.reason[i], self.detail[i] = reason, detail(int(i))

    def add_errors(self, errors: dict[int, tuple[str, str]], n: int) -> None:
        for i, (reason, detail) in sorted(errors.items()):
            if i < n and self.reason[i] is None:
                self.reason[i], self.detail[i] = reason, detail

    @property
    def dropped(self) -> np.ndarray:
        return self.reason != None  # noqa: E711

    def table(self, source: pa.Table, stage: str) -> pa.Table:
        rows = np.flatnonzero(self.dropped)
        out = source.take(pa.array(rows, pa.int64()))
        return (out.append_column("reject_stage", pa.array([stage] * len(rows), pa.string()))
                .append_column("reject_reason", pa.array(self.reason[rows].tolist(), pa.string()))
                .append_column("reject_detail", pa.array(self.detail[rows].tolist(), pa.string())))


def _strings(table: pa.Table, name: str) -> pa.Array:
    """A string column, or nulls when the table has none."""
    if name in table.column_names:
        return table.column(name).combine_chunks().cast(pa.string())
    return pa.nulls(table.num_rows, pa.string())


# --- SFT -------------------------------------------------------------------------------------

def pack_bfd(lengths: np.ndarray, groups: np.ndarray, capacity: int) -> np.ndarray:
    """Best-fit decreasing: the row of each item (rows of ``capacity``, never mixing groups;
    rows numbered group by group). Deterministic: ties go to the earlier item / row."""
    row = np.empty(len(lengths), dtype=np.int64)
    rows = 0
    for group in dict.fromkeys(groups.tolist()):
        members = np.flatnonzero(groups == group)
        order = members[np.lexsort((members, -lengths[members]))]
        free: list[tuple[int, int]] = []  # (room left, row), sorted
        for item in order.tolist():
            size = int(lengths[item])
            at = bisect.bisect_left(free, (size, -1))
            if at < len(free):
                room, r = free.pop(at)
            else:
                room, r, rows = capacity, rows, rows + 1
            row[item] = r
            bisect.insort(free, (room - size, r))
    return row


def tokenize_sft_table(table: pa.Table, cfg: SftTokenizeConfig, tok: Any, fmt: ChatFormat,
                       ) -> StageOutput:
    """One ``sft`` table in: ``sft_tokens`` rows out (packed or one per conversation), each
    conversation in ``token_index``; rows that cannot be trained on are rejected."""
    n = table.num_rows
    messages = table.column("messages").combine_chunks()
    lengths_m, _, _, is_assistant = _message_parts(messages)
    pieces = pieces_for(messages, fmt, cfg)
    enc = encode_pieces(pieces, n, tok, cfg)
    rej = Rejections(n)
    rej.add_errors(pieces.errors, n)
    has_assistant = _sums(is_assistant.astype(np.float64), lengths_m) > 0
    rej.add(~has_assistant, "no_assistant_turn", lambda i: "no assistant message to learn")
    over = enc.lengths > cfg.max_length
    keep_len = np.minimum(enc.lengths, cfg.max_length)
    if cfg.truncation == "drop":
        rej.add(over, "too_long",
                lambda i: f"{enc.lengths[i]} tokens > max_length {cfg.max_length}")
    else:
        learned = _sums(gather(enc.mask, enc.starts, keep_len).astype(np.float64), keep_len)
        rej.add(over & (learned == 0), "too_long",
                lambda i: f"{enc.lengths[i]} tokens; no assistant token within max_length "
                          f"{cfg.max_length}")
    kept = np.flatnonzero(~rej.dropped)
    k_len = keep_len[kept]
    ids = gather(enc.ids, enc.starts[kept], k_len)
    mask = gather(enc.mask, enc.starts[kept], k_len)
    conv_ids = table.column("id").combine_chunks().take(pa.array(kept, pa.int64()))
    split = _strings(table, "split").take(pa.array(kept, pa.int64()))
    if cfg.packing:
        groups = np.asarray(pc.fill_null(split, "\x00").to_pylist(), dtype=object)
        row = pack_bfd(k_len, groups, cfg.max_length)
        order = np.lexsort((np.arange(len(kept)), row))
        per_row = np.bincount(row, minlength=int(row.max()) + 1 if len(row) else 0)
        first = _excl_cumsum(per_row)
        ids = gather(ids, _excl_cumsum(k_len)[order], k_len[order])
        mask = gather(mask, _excl_cumsum(k_len)[order], k_len[order])
        row_len = np.bincount(row, weights=k_len, minlength=len(per_row)).astype(np.int64)
        offset = np.empty(len(kept), dtype=np.int64)
        offset[order] = (_excl_cumsum(k_len[order])
                         - np.repeat(_excl_cumsum(row_len), per_row))
        heads = pa.array(order[first], pa.int64())
        columns = {"id": conv_ids.take(heads), "input_ids": list_array(ids, row_len,
                                                                       tok.token_dtype),
                   "loss_mask": list_array(mask, row_len), "split": split.take(heads),
                   "seq_lengths": list_array(k_len[order], per_row, np.int32)}
    else:
        row, offset, row_len = np.arange(len(kept)), np.zeros(len(kept), np.int64), k_len
        columns = {"id": conv_ids, "input_ids": list_array(ids, k_len, tok.token_dtype),
                   "loss_mask": list_array(mask, k_len), "split": split}
    if cfg.trl_columns:
        columns["assistant_masks"] = columns["loss_mask"]
    index = pa.table({
        "doc_id": conv_ids,
        "url": pa.nulls(len(kept), pa.string()),
        "source": _strings(table, "source").take(pa.array(kept, pa.int64())),
        "row": pa.array(row, pa.int64()),
        "offset": pa.array(offset.astype(np.int32)),
        "length": pa.array(k_len, pa.int64()),
        "truncated": pa.array(over[kept]),
    })
    return StageOutput(kept=pa.table(columns), rejected=rej.table(table, SFT_STAGE), rows_in=n,
                       kept_rows=len(kept), extras={INDEX_DIR: (index, TOKEN_INDEX)})


# --- preference ------------------------------------------------------------------------------

def concat_lists(a: pa.ListArray, b: pa.ListArray) -> pa.ListArray:
    """Row-wise ``a[i] + b[i]`` of two list columns, vectorised."""
    la = pc.fill_null(pc.list_value_length(a), 0).to_numpy().astype(np.int64)
    lb = pc.fill_null(pc.list_value_length(b), 0).to_numpy().astype(np.int64)
    values = pa.concat_arrays([a.flatten(), b.flatten()])
    both = np.stack([la, lb], axis=1).ravel()
    starts = np.stack([_excl_cumsum(la), la.sum() + _excl_cumsum(lb)], axis=1).ravel()
    take = np.repeat(starts, both) + (np.arange(int(both.sum()))
                                      - np.repeat(_excl_cumsum(both), both))
    offsets = np.concatenate([[0], np.cumsum(la + lb)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values.take(pa.array(take, pa.int64())))


def _row_differs(flat_a: np.ndarray, starts_a: np.ndarray, flat_b: np.ndarray,
                 starts_b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per row: do the runs ``a[starts_a:+len]`` and ``b[starts_b:+len]`` differ?"""
    diff = gather(flat_a, starts_a, lengths) != gather(flat_b, starts_b, lengths)
    return _sums(diff.astype(np.float64), lengths) > 0


def tokenize_preference_table(table: pa.Table, cfg: PreferenceTokenizeConfig, tok: Any,
                              fmt: ChatFormat) -> StageOutput:
    """One ``preference`` table in: prompt ids (up to the reply's header) and the ids of each
    reply (content + end-of-turn + the rest of the continuation) out."""
    n = table.num_rows
    prompt = table.column("prompt").combine_chunks()
    chosen, rejected = (table.column(c).combine_chunks() for c in ("chosen", "rejected"))
    both = pa.concat_arrays([concat_lists(prompt, chosen), concat_lists(prompt, rejected)])
    lengths_m, _, _, _ = _message_parts(both)
    pieces = pieces_for(both, fmt, cfg)
    enc = encode_pieces(pieces, 2 * n, tok, cfg)
    rej = Rejections(n)
    rej.add_errors({i % n: e for i, e in sorted(pieces.errors.items(), reverse=True)}, n)
    n_prompt = pc.fill_null(pc.list_value_length(prompt), 0).to_numpy().astype(np.int64)
    first_reply = np.tile(n_prompt, 2) + _excl_cumsum(lengths_m)  # message index in `both`
    has_reply = lengths_m > np.tile(n_prompt, 2)
    turn_piece = np.append(pieces.turn_piece, -1)  # the extra -1 answers "no reply"
    reply_piece = turn_piece[np.where(has_reply, first_reply, len(turn_piece) - 1)]
    ok_reply = (reply_piece >= 0).reshape(2, n).all(axis=0)
    rej.add(~ok_reply, "completion_not_assistant",
            lambda i: "chosen and rejected must each start with an assistant message")
    plen = np.where(reply_piece >= 0, enc.piece_offset[np.maximum(reply_piece, 0)], 0)
    pc_len, pr_len = plen[:n], plen[n:]
    sc, sr = enc.starts[:n], enc.starts[n:]
    same = (pc_len == pr_len) & ~rej.dropped
    mismatch = np.zeros(n, dtype=bool)
    mismatch[same] = _row_differs(enc.ids, sc[same], enc.ids, sr[same], pc_len[same])
    rej.add(~rej.dropped & ((pc_len != pr_len) | mismatch), "prompt_not_prefix",
            lambda i: "the prompt's ids differ between the chosen and the rejected render")
    reply_c, reply_r = enc.lengths[:n] - pc_len, enc.lengths[n:] - pr_len
    longest = pc_len + np.maximum(reply_c, reply_r)
    over = longest > cfg.max_length
    room = cfg.max_length - pc_len
    kc, kr = np.minimum(reply_c, room), np.minimum(reply_r, room)
    if cfg.truncation == "drop":
        rej.add(over, "too_long", lambda i: f"{longest[i]} tokens (prompt {pc_len[i]} + reply) "
                                             f"> max_length {cfg.max_length}")
    else:
        rej.add(over & (room < 1), "too_long",
                lambda i: f"the prompt alone has {pc_len[i]} tokens, max_length is "
                          f"{cfg.max_length}")
        cut = over & (room >= 1) & (kc == kr) & ~rej.dropped
        identical = np.zeros(n, dtype=bool)
        identical[cut] = ~_row_differs(enc.ids, sc[cut] + pc_len[cut], enc.ids,
                                       sr[cut] + pr_len[cut], kc[cut])
        rej.add(identical, "too_long",
                lambda i: f"chosen and rejected are identical within max_length "
                          f"{cfg.max_length}")
    kept = np.flatnonzero(~rej.dropped)
    dtype = tok.token_dtype
    p, c, r = pc_len[kept], kc[kept], kr[kept]
    columns = {
        "id": table.column("id").combine_chunks().take(pa.array(kept, pa.int64())),
        "prompt_ids": list_array(gather(enc.ids, sc[kept], p), p, dtype),
        "chosen_ids": list_array(gather(enc.ids, sc[kept] + p, c), c, dtype),
        "rejected_ids": list_array(gather(enc.ids, sr[kept] + p, r), r, dtype),
        "split": _strings(table, "split").take(pa.array(kept, pa.int64())),
        "truncated": pa.array(over[kept]),
    }
    if cfg.trl_columns:
        columns["chosen_input_ids"] = list_array(gather(enc.ids, sc[kept], p + c), p + c, dtype)
        columns["rejected_input_ids"] = list_array(gather(enc.ids, sr[kept], p + r), p + r,
                                                   dtype)
    return StageOutput(kept=pa.table(columns), rejected=rej.table(table, PREFERENCE_STAGE),
                       rows_in=n)


# --- stages ----------------------------------------------------------------------------------

@functools.cache
def _load(folder: str, _sha: str) -> Any:
    from curate.tokenizer import load_tokenizer

    return load_tokenizer(Path(folder))


@functools.cache
def _format(folder: str, sha: str, template: str) -> ChatFormat:
    return chat_format(_load(folder, sha), template)


def _prepare(cfg: ChatTokenizeConfig) -> tuple[Any, ChatFormat]:
    tok = _load(cfg.tokenizer, cfg.tokenizer_sha256)
    return tok, _format(cfg.tokenizer, cfg.tokenizer_sha256, effective_template(cfg))


def sft_unit(unit: WorkUnit, cfg: SftTokenizeConfig) -> StageOutput:
    (path,) = unit.inputs
    return tokenize_sft_table(read_shard(path), cfg, *_prepare(cfg))


def preference_unit(unit: WorkUnit, cfg: PreferenceTokenizeConfig) -> StageOutput:
    (path,) = unit.inputs
    return tokenize_preference_table(read_shard(path), cfg, *_prepare(cfg))


SFT_TOKENIZE = Stage(name=SFT_STAGE, version="1", output_kind=SFT_TOKENS, process=sft_unit)
PREFERENCE_TOKENIZE = Stage(name=PREFERENCE_STAGE, version="1", output_kind=PREFERENCE_TOKENS,
                            process=preference_unit)


def with_fingerprint(cfg: ChatTokenizeConfig) -> ChatTokenizeConfig:
    """The config with the tokenizer's path made absolute and the hashes of its tokenizer.json
    and of the effective chat template filled in (a change re-tokenizes on resume)."""
    from curate.tokenize import tokenizer_fingerprint

    folder = Path(cfg.tokenizer).expanduser().resolve()
    cfg = cfg.model_copy(update={"tokenizer": str(folder),
                                 "tokenizer_sha256": tokenizer_fingerprint(folder)})
    digest = hashlib.sha256(effective_template(cfg).encode()).hexdigest()
    return cfg.model_copy(update={"template_sha256": digest})


def write_meta(out_dir: Path, cfg: ChatTokenizeConfig) -> dict[str, Any]:
    """``_tokenizer.json``: what a trainer needs to read the ids without the tokenizer."""
    from schemas.shards import fsync_dir, temp_name

    tok, fmt = _prepare(cfg)
    meta = {"vocab_size": tok.vocab_size, "eos_id": tok.eos_id, "bos_id": tok.bos_id,
            "pad_id": tok.pad_id, "end_of_turn_id": tok.end_of_turn_id,
            "token_dtype": np.dtype(tok.token_dtype).name, "max_length": cfg.max_length,
            "truncation": cfg.truncation, "packing": bool(getattr(cfg, "packing", False)),
            "chat_template": fmt.template, "vectorised_chatml": fmt.chatml,
            "tokenizer": cfg.tokenizer, "tokenizer_sha256": cfg.tokenizer_sha256}
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / META_NAME
    tmp = temp_name(final)
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, final)
    fsync_dir(out_dir)
    return meta


def plan_input(input_dir: Path, kind: str) -> list[WorkUnit]:
    """One unit per shard of an ``sft`` / ``preference`` stage folder (its kind checked)."""
    from schemas import read_manifest

    manifest = read_manifest(Path(input_dir))
    if manifest is None:
        raise FileNotFoundError(f"{input_dir} has no _manifest.json; pass a {kind} stage folder")
    if manifest.kind != kind:
        raise ValueError(f"{input_dir} holds {manifest.kind} shards, not {kind}")
    return plan_shards(Path(input_dir))


def _run(stage: Stage, kind: str, input_dir: Path, out_dir: Path, cfg: ChatTokenizeConfig,
         workers: int, progress: bool, force: bool) -> RunReport:
    cfg = with_fingerprint(cfg)
    units = plan_input(input_dir, kind)
    write_meta(Path(out_dir), cfg)
    return run_stage(stage, units, Path(out_dir), cfg, workers=workers, progress=progress,
                     force=force)


def run_sft_tokenize(input_dir: Path, out_dir: Path, cfg: SftTokenizeConfig, workers: int = 1,
                     progress: bool = False, force: bool = False) -> RunReport:
    """Tokenize every shard of an ``sft`` stage folder into ``sft_tokens`` shards."""
    return _run(SFT_TOKENIZE, SFT.name, input_dir, out_dir, cfg, workers, progress, force)


def run_preference_tokenize(input_dir: Path, out_dir: Path, cfg: PreferenceTokenizeConfig,
                            workers: int = 1, progress: bool = False, force: bool = False,
                            ) -> RunReport:
    """Tokenize every shard of a ``preference`` stage folder into ``preference_tokens``."""
    return _run(PREFERENCE_TOKENIZE, PREFERENCE.name, input_dir, out_dir, cfg, workers,
                progress, force)


# --- reading back ----------------------------------------------------------------------------

def chat_token_stats(stage_dir: Path) -> dict[str, Any]:
    """Rows, tokens, trained tokens and truncations of an sft_tokens / preference_tokens
    stage folder."""
    from schemas import shard_paths

    stats: Counter = Counter()
    for path in shard_paths(stage_dir):
        table = read_shard(path)
        stats["rows"] += table.num_rows
        if "loss_mask" in table.column_names:
            stats["tokens"] += int(pc.sum(pc.list_value_length(table["input_ids"])).as_py() or 0)
            stats["trained_tokens"] += int(pc.sum(pc.list_flatten(table["loss_mask"])).as_py()
                                           or 0)
            index = read_shard(path.parent / INDEX_DIR / path.name)
            stats["conversations"] += index.num_rows
            stats["truncated"] += int(pc.sum(index["truncated"]).as_py() or 0)
        else:
            for col in ("prompt_ids", "chosen_ids", "rejected_ids"):
                stats["tokens"] += int(pc.sum(pc.list_value_length(table[col])).as_py() or 0)
            stats["pairs"] += table.num_rows
            if "truncated" in table.column_names:
                stats["truncated"] += int(pc.sum(table["truncated"]).as_py() or 0)
    return dict(stats)


def trl_dataset(stage_dir: Path, trainer: Literal["sft", "reward"],
                cache_dir: Path | None = None) -> Any:
    """A ``datasets.Dataset`` over a stage folder's shards with just the columns a TRL trainer
    reads pre-tokenized (nothing is tokenized again): ``sft``: ``input_ids``,
    ``assistant_masks`` (and ``seq_lengths`` when packed; train those with
    ``padding_free=True``); ``reward``: ``chosen_ids``/``rejected_ids`` = prompt + reply.

    RewardTrainer reads ``chosen_ids`` as the whole sequence, which in a ``preference_tokens``
    shard is the reply alone: feed it this view, never the raw shard.
    """
    import datasets

    from schemas import shard_paths

    files = [str(p) for p in shard_paths(Path(stage_dir))]
    if not files:
        raise FileNotFoundError(f"no shards in {stage_dir}")
    ds = datasets.load_dataset("arrow", data_files=files, split="train",
                               cache_dir=str(cache_dir) if cache_dir else None)
    cols = set(ds.column_names)
    if trainer == "sft":
        if "assistant_masks" not in cols:
            ds = ds.rename_column("loss_mask", "assistant_masks")
        keep = ["input_ids", "assistant_masks"] + (["seq_lengths"] if "seq_lengths" in cols
                                                   else [])
        return ds.select_columns(keep)
    if trainer == "reward":
        if "chosen_input_ids" not in cols:
            raise ValueError(f"{stage_dir} has no chosen_input_ids/rejected_input_ids; "
                             "re-run preference_tokenize with trl_columns: true")
        ds = ds.select_columns(["chosen_input_ids", "rejected_input_ids"])
        return ds.rename_columns({"chosen_input_ids": "chosen_ids",
                                  "rejected_input_ids": "rejected_ids"})
    raise ValueError(f"unknown trainer {trainer!r}: sft or reward")
