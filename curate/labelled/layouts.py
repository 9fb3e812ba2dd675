"""Labelled-set layouts: which one a file uses, and how its rows become message lists.

A file's layout is detected once from its columns (the union of its records' keys), so a row
that lacks a column is a broken row of a known layout, not a row of another layout. Each
layout names *fields* (a conversation, an instruction, a chosen answer...) and the columns
that may hold them; a field's values become Arrow columns, either column-wise from a typed
table (the common, clean case) or record by record (CSV cells, mixed types, broken turns),
and the same array operations then build the conversations, so both paths give the same rows.

Conversations are handled as :class:`Turns`: flat role and content arrays plus per-row
offsets, so concatenating, slicing and comparing the conversations of a whole file are a few
numpy index operations rather than a Python loop per conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas.kinds import MESSAGE, MESSAGES

ROLES = ("system", "user", "assistant")
ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "chatgpt": "assistant", "ai": "assistant",
}
"""Role names seen in the wild (ShareGPT ``human``/``gpt``, OpenAssistant ``prompter``,
Gemini ``model``...), matched case-insensitively; anything else is kept as written and
rejected by validation as ``unknown_role``."""

Kind = Literal["sft", "preference"]
Shape = Literal["text", "messages", "either", "transcript", "number"]


# --- conversations as flat arrays ------------------------------------------------------------


def _within(lengths: np.ndarray) -> np.ndarray:
    """For rows of ``lengths`` items laid end to end: each item's position in its row."""
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - starts


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _as_string(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if values.type == pa.string() else values.cast(pa.string())


@dataclass(frozen=True)
class Turns:
    """The conversations of ``n`` rows: row i's turns are ``roles[offsets[i]:offsets[i+1]]``
    (and the same slice of ``contents``), always compact and in row order."""

    roles: pa.Array
    contents: pa.Array
    offsets: np.ndarray

    @property
    def n(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self) -> np.ndarray:
        """The row of every turn."""
        return np.repeat(np.arange(self.n, dtype=np.int64), self.lengths)

    def positions(self) -> np.ndarray:
        """The 0-based position of every turn within its row."""
        return _within(self.lengths)

    @classmethod
    def empty(cls, n: int) -> Turns:
        return cls(pa.array([], pa.string()), pa.array([], pa.string()),
                   np.zeros(n + 1, dtype=np.int64))

    @classmethod
    def from_lists(cls, lists: pa.Array | pa.ChunkedArray, role_field: str = "role",
                   content_field: str = "content") -> Turns:
        """From a list<struct<role, content>> column; a null list counts as no turns."""
        if isinstance(lists, pa.ChunkedArray):
            lists = (lists.combine_chunks() if lists.num_chunks
                     else pa.array([], lists.type))
        offsets = lists.offsets.to_numpy().astype(np.int64)
        lengths = np.diff(offsets)
        if lists.null_count:
            lengths[~np.asarray(lists.is_valid())] = 0
        idx = np.repeat(offsets[:-1], lengths) + _within(lengths)
        values = lists.values
        roles = _as_string(pc.struct_field(values, role_field))
        contents = _as_string(pc.struct_field(values, content_field))
        if len(idx) and not (idx[0] == 0 and idx[-1] == len(idx) - 1
                             and np.array_equal(lengths, np.diff(offsets))):
            index = pa.array(idx)
            roles, contents = roles.take(index), contents.take(index)
        else:
            roles, contents = roles.slice(0, len(idx)), contents.slice(0, len(idx))
        return cls(roles, pc.fill_null(contents, ""), _offsets(lengths))

    @classmethod
    def single(cls, role: str, contents: pa.Array, present: np.ndarray) -> Turns:
        """One turn of ``role`` per row where ``present``, holding that row's content."""
        lengths = present.astype(np.int64)
        kept = _as_string(contents).filter(pa.array(present))
        return cls(pa.repeat(pa.scalar(role, pa.string()), len(kept)), pc.fill_null(kept, ""),
                   _offsets(lengths))

    @classmethod
    def stack(cls, parts: list[Turns]) -> Turns:
        """The rows of ``parts`` one after the other."""
        return cls(pa.concat_arrays([p.roles for p in parts]),
                   pa.concat_arrays([p.contents for p in parts]),
                   _offsets(np.concatenate([p.lengths for p in parts])))

    def to_lists(self) -> pa.ListArray:
        """As a ``messages`` column (list<struct<role, content>>)."""
        values = pa.StructArray.from_arrays([self.roles, self.contents], fields=list(MESSAGE))
        return pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), values,
                                        type=MESSAGES)

    def take_rows(self, rows: np.ndarray) -> Turns:
        """The conversations of ``rows`` (indices), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        idx = pa.array(np.repeat(self.offsets[rows], lengths) + _within(lengths))
        return Turns(self.roles.take(idx), self.contents.take(idx), _offsets(lengths))

    def slice(self, start: np.ndarray, stop: np.ndarray | None = None) -> Turns:
        """Turns ``start[i]:stop[i]`` of each row (clipped to the row)."""
        lengths = self.lengths
        stop = lengths if stop is None else np.minimum(stop, lengths)
        start = np.clip(start, 0, lengths)
        new = np.maximum(stop - start, 0)
        idx = pa.array(np.repeat(self.offsets[:-1] + start, new) + _within(new))
        return Turns(self.roles.take(idx), self.contents.take(idx), _offsets(new))

    def with_roles(self, roles: pa.Array) -> Turns:
        return Turns(roles, self.contents, self.offsets)

    def keep_roles(self, roles: tuple[str, ...]) -> Turns:
        """Only the turns whose role is in ``roles`` (e.g. user + assistant for language ID)."""
        mask = np.asarray(pc.is_in(self.roles, pa.array(roles, pa.string())), dtype=bool)
        lengths = np.bincount(self.rows()[mask], minlength=self.n).astype(np.int64)
        keep = pa.array(mask)
        return Turns(self.roles.filter(keep), self.contents.filter(keep), _offsets(lengths))

    def join(self, sep: str = "\n\n", with_roles: bool = True) -> pa.Array:
        """One string per row: its turns joined (``role: content`` when ``with_roles``)."""
        turns = (pc.binary_join_element_wise(self.roles, self.contents, ": ") if with_roles
                 else self.contents)
        lists = pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), turns)
        return pc.binary_join(lists, sep)

    def chars(self) -> np.ndarray:
        """Characters of content per row."""
        lengths = np.asarray(pc.utf8_length(self.contents), dtype=np.int64)
        return np.bincount(self.rows(), weights=lengths, minlength=self.n).astype(np.int64)


def concat(*parts: Turns) -> Turns:
    """Row-wise concatenation: row i is part 1's turns of row i, then part 2's, ..."""
    lengths = [p.lengths for p in parts]
    total = np.sum(lengths, axis=0) if parts else np.zeros(0, np.int64)
    out = _offsets(total)
    idx = np.empty(int(total.sum()), dtype=np.int64)
    before = out[:-1].copy()
    base = 0
    for n in lengths:
        idx[np.repeat(before, n) + _within(n)] = base + np.arange(int(n.sum()), dtype=np.int64)
        before += n
        base += int(n.sum())
    take = pa.array(idx)
    roles = pa.concat_arrays([p.roles for p in parts]).take(take)
    contents = pa.concat_arrays([p.contents for p in parts]).take(take)
    return Turns(roles, contents, out)


def shared_prefix(a: Turns, b: Turns) -> np.ndarray:
    """Per row, how many leading turns of ``a`` and ``b`` are equal (role and content)."""
    m = np.minimum(a.lengths, b.lengths)
    within = _within(m)
    ia = pa.array(np.repeat(a.offsets[:-1], m) + within)
    ib = pa.array(np.repeat(b.offsets[:-1], m) + within)
    same = pc.and_(pc.equal(a.roles.take(ia), b.roles.take(ib)),
                   pc.equal(a.contents.take(ia), b.contents.take(ib)))
    bad = np.flatnonzero(~np.asarray(same, dtype=bool))
    k = m.copy()
    if len(bad):
        rows = np.repeat(np.arange(a.n, dtype=np.int64), m)[bad]
        first_rows, first = np.unique(rows, return_index=True)
        k[first_rows] = within[bad[first]]
    return k


def equal(a: Turns, b: Turns) -> np.ndarray:
    """Per row, whether the two conversations are identical."""
    return (a.lengths == b.lengths) & (shared_prefix(a, b) == a.lengths)


def normalise_roles(turns: Turns, extra: dict[str, str] | None = None) -> Turns:
    """Known role aliases (any case, surrounding spaces) to system/user/assistant; unknown
    roles are left as written, for validation to reject with their name."""
    aliases = {**ROLE_ALIASES, **{k.lower(): v for k, v in (extra or {}).items()}}
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(turns.roles))
    where = pc.index_in(lowered, value_set=pa.array(list(aliases), pa.string()))
    mapped = pa.array(list(aliases.values()), pa.string()).take(where)
    return turns.with_roles(pc.coalesce(mapped, turns.roles))


# --- layouts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A value a layout needs, and the columns that may hold it (the first present wins)."""

    name: str
    columns: tuple[str, ...]
    shape: Shape
    required: bool = True
    role: str = "user"
    """The role a plain string takes in an ``either`` field."""


@dataclass(frozen=True)
class Layout:
    name: str
    kind: Kind
    fields: tuple[Field, ...]
    doc: str

    def columns(self, available: set[str]) -> dict[str, str | None]:
        """Field name -> the column holding it (None when an optional field is absent)."""
        return {f.name: next((c for c in f.columns if c in available), None)
                for f in self.fields}

    def matches(self, available: set[str]) -> bool:
        found = self.columns(available)
        return all(found[f.name] is not None for f in self.fields if f.required)


_SYSTEM = Field("system", ("system", "system_prompt"), "text", required=False)
_SCORES = (Field("score_chosen", ("score_chosen",), "number", required=False),
           Field("score_rejected", ("score_rejected",), "number", required=False))

LAYOUTS: tuple[Layout, ...] = (
    Layout("messages", "sft", (Field("messages", ("messages",), "messages"), _SYSTEM),
           "messages: [{role, content}, ...]"),
    Layout("sharegpt", "sft", (Field("messages", ("conversations", "conversation"), "messages"),
                               _SYSTEM),
           "ShareGPT conversations: [{from, value}, ...] (human/gpt/system)"),
    Layout("alpaca", "sft", (Field("instruction", ("instruction",), "text"),
                             Field("input", ("input", "context"), "text", required=False),
                             Field("output", ("output", "response"), "text"), _SYSTEM),
           "Alpaca: instruction, optional input (or context), output (or response)"),
    Layout("prompt_completion", "sft", (Field("prompt", ("prompt",), "either"),
                                        Field("completion", ("completion", "response"),
                                              "either", role="assistant"), _SYSTEM),
           "prompt + completion (or response): strings or message lists"),
    Layout("preference", "preference", (Field("prompt", ("prompt",), "either"),
                                        Field("chosen", ("chosen",), "either", role="assistant"),
                                        Field("rejected", ("rejected",), "either",
                                              role="assistant"), _SYSTEM, *_SCORES),
           "prompt + chosen + rejected: strings or message lists (a response that repeats "
           "the prompt has it stripped)"),
    Layout("preference_transcripts", "preference",
           (Field("chosen", ("chosen",), "transcript"),
            Field("rejected", ("rejected",), "transcript"), *_SCORES),
           "chosen + rejected full transcripts (message lists or 'Human: ... Assistant: ...' "
           "text); the shared leading turns become the prompt"),
)
LAYOUT_NAMES = tuple(layout.name for layout in LAYOUTS)


class UnknownLayout(ValueError):
    """No layout of the requested kind fits the columns; the message names what was seen."""


def get_layout(name: str) -> Layout:
    for layout in LAYOUTS:
        if layout.name == name:
            return layout
    raise UnknownLayout(f"unknown layout {name!r}; known: {', '.join(LAYOUT_NAMES)}")


def guess_kind(columns: set[str]) -> Kind | None:
    """Preference when chosen and rejected are there, SFT when an SFT layout fits, else None."""
    if {"chosen", "rejected"} <= columns:
        return "preference"
    if any(layout.kind == "sft" and layout.matches(columns) for layout in LAYOUTS):
        return "sft"
    return None


def detect_layout(columns: set[str] | list[str], kind: Kind, forced: str = "auto",
                  where: str = "") -> Layout:
    """The first layout of ``kind`` whose required columns are all present (or ``forced``)."""
    available = set(columns)
    candidates = [layout for layout in LAYOUTS if layout.kind == kind]
    if forced != "auto":
        layout = get_layout(forced)
        if layout.kind != kind:
            raise UnknownLayout(f"layout {forced!r} holds {layout.kind} data, not {kind}")
        candidates = [layout]
    for layout in candidates:
        if layout.matches(available):
            return layout
    seen = ", ".join(sorted(available)) or "none"
    expected = "; ".join(f"{layout.name} ({layout.doc})" for layout in candidates)
    hint = ""
    other = guess_kind(available)
    if other is not None and other != kind:
        hint = f" These columns look like {other} data: ingest them as {other}."
    prefix = f"{where}: " if where else ""
    raise UnknownLayout(f"{prefix}unknown {kind} layout; columns seen: {seen}. Expected one of: "
                        f"{expected}. Map other names with rename (e.g. --set "
                        f"rename.question=prompt).{hint}")


# --- field values ----------------------------------------------------------------------------


class FieldError(ValueError):
    """A value of the wrong shape; ``reason`` is the reject reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_HH_MARKER = re.compile(r"(?:^|\n\n)(Human|Assistant|System|H|A):[ \t]?")
_HH_ROLES = {"Human": "user", "H": "user", "Assistant": "assistant", "A": "assistant",
             "System": "system"}


def parse_transcript(text: str) -> list[dict[str, str]]:
    """An Anthropic HH-style transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as turns."""
    marks = list(_HH_MARKER.finditer(text))
    if not marks or text[:marks[0].start()].strip():
        raise FieldError("wrong_type", "a string without 'Human:' / 'Assistant:' turns, "
                                       "expected a transcript or a list of turns")
    turns = []
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        end = nxt.start() if nxt is not None else len(text)
        turns.append({"role": _HH_ROLES[m.group(1)], "content": text[m.end():end].strip()})
    return turns


def _type_name(value: Any) -> str:
    return {str: "string", int: "number", float: "number", bool: "boolean", list: "list",
            dict: "object"}.get(type(value), type(value).__name__)


def _content(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI-style content parts
        texts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                kind = part.get("type") if isinstance(part, dict) else _type_name(part)
                raise FieldError("wrong_type", f"{where} content has a non-text part ({kind})")
            texts.append(part["text"])
        return "".join(texts)
    raise FieldError("wrong_type", f"{where} content is a {_type_name(value)}, "
                                   "expected a string")


def _turns(value: list, column: str) -> list[dict[str, str]]:
    turns = []
    for i, turn in enumerate(value, start=1):
        where = f"{column!r} turn {i}"
        if not isinstance(turn, dict):
            raise FieldError("wrong_type", f"{where} is a {_type_name(turn)}, expected an "
                                           "object with role and content")
        role = turn.get("role", turn.get("from"))
        if role is None:
            raise FieldError("wrong_type", f"{where} has no role ('role' or 'from')")
        if not isinstance(role, str):
            raise FieldError("wrong_type", f"{where} role is a {_type_name(role)}")
        if "content" not in turn and "value" not in turn:
            raise FieldError("wrong_type", f"{where} has no content ('content' or 'value')")
        turns.append({"role": role,
                      "content": _content(turn.get("content", turn.get("value")), where)})
    return turns


def _maybe_json_list(value: str) -> Any:
    """A CSV cell holding a JSON list of turns, decoded; other strings unchanged."""
    if value.lstrip()[:1] == "[":
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
        if isinstance(decoded, list):
            return decoded
    return value


def field_value(value: Any, field: Field, column: str, from_text: bool) -> Any:
    """One record's value of ``field`` in its Arrow form (str, list of turns, float or None
    when absent); raises FieldError for a value of the wrong shape. ``from_text``: the source
    only has strings (CSV), so a cell may hold JSON turns or a number."""
    if value is None:
        return None
    shape = field.shape
    if from_text and isinstance(value, str) and shape in ("messages", "either", "transcript"):
        value = _maybe_json_list(value)
    if shape == "number":
        if from_text and isinstance(value, str):
            if not value.strip():
                return None
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise FieldError("wrong_type", f"{column!r} is a {_type_name(value)}, expected a number")
    if isinstance(value, str):
        if shape == "text":
            return value
        if shape == "either":
            return [{"role": field.role, "content": value}]
        if shape == "transcript":
            return parse_transcript(value)
    elif isinstance(value, list) and shape != "text":
        return _turns(value, column)
    expected = {"text": "a string", "messages": "a list of turns",
                "either": "a string or a list of turns",
                "transcript": "a list of turns or a 'Human:/Assistant:' transcript"}[shape]
    raise FieldError("wrong_type", f"{column!r} is a {_type_name(value)}, expected {expected}")


def _is_text(dtype: pa.DataType) -> bool:
    return (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
            or pa.types.is_string_view(dtype) or pa.types.is_null(dtype))


def _turn_fields(dtype: pa.DataType) -> tuple[str, str] | None:
    """(role field, content field) of a list<struct<...>> of string turns, else None."""
    if not (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)):
        return None
    item = dtype.value_type
    if not pa.types.is_struct(item):
        return None
    names = {item.field(i).name: item.field(i).type for i in range(item.num_fields)}
    role = next((n for n in ("role", "from") if n in names), None)
    content = next((n for n in ("content", "value") if n in names), None)
    if role is None or content is None or not (_is_text(names[role])
                                               and _is_text(names[content])):
        return None
    if ("role" in names and "from" in names) or ("content" in names and "value" in names):
        return None  # which one wins is a per-record question
    return role, content


def column_values(column: pa.Array | pa.ChunkedArray, field: Field) -> pa.Array | Turns | None:
    """A whole typed column as the field's Arrow form (strings, Turns or float32), or None
    when its type needs the per-record path. Null entries stay null (absent)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dtype = column.type
    if field.shape == "number":
        if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_null(dtype):
            return column.cast(pa.float32())
        return None
    if _is_text(dtype):
        if field.shape == "text":
            return _as_string(column)
        if field.shape == "either":
            present = np.asarray(column.is_valid(), dtype=bool)
            return Turns.single(field.role, _as_string(column), present)
        return None  # transcripts in text form are parsed record by record
    names = _turn_fields(dtype)
    if names is None or field.shape == "text":
        return None
    flat = pc.list_flatten(column)
    if (flat.null_count or pc.struct_field(flat, names[0]).null_count
            or pc.struct_field(flat, names[1]).null_count):
        return None  # a null or missing role/content: the records say which
    return Turns.from_lists(column, *names)


def values_from_records(values: list[Any], field: Field) -> pa.Array | Turns:
    """The per-record path's values of one field (None = absent) as its Arrow form."""
    if field.shape == "number":
        return pa.array(values, pa.float32())
    if field.shape == "text":
        return pa.array(values, pa.string())
    lists = pa.array(values, pa.list_(pa.struct([("role", pa.string()),
                                                 ("content", pa.string())])))
    return Turns.from_lists(lists)


# --- building conversations ------------------------------------------------------------------


@dataclass
class Conversations:
    """What a layout's fields become: ``messages`` for SFT, ``prompt``/``chosen``/``rejected``
    for preference, plus scores."""

    parts: dict[str, Turns]
    scores: dict[str, pa.Array]


def _text_turns(role: str, text: pa.Array, blank_is_absent: bool) -> Turns:
    present = np.asarray(text.is_valid(), dtype=bool)
    if blank_is_absent:
        blank = np.asarray(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True),
                           dtype=bool)
        present &= ~blank
    return Turns.single(role, text, present)


def _as_turns(values: pa.Array | Turns | None, role: str, n: int) -> Turns:
    if values is None:
        return Turns.empty(n)
    if isinstance(values, Turns):
        return values
    return _text_turns(role, values, blank_is_absent=False)


def build(layout: Layout, values: dict[str, Any], n: int) -> Conversations:
    """The conversations of ``n`` rows from their field values (None = column absent).

    A blank system prompt means no system prompt; a blank Alpaca ``input`` means no input.
    """
    system = values.get("system")
    sys_turns = (_text_turns("system", system, blank_is_absent=True) if system is not None
                 else Turns.empty(n))
    scores = {k: values[k] if values.get(k) is not None else pa.nulls(n, pa.float32())
              for k in ("score_chosen", "score_rejected")}
    name = layout.name
    if name in ("messages", "sharegpt"):
        return Conversations({"messages": concat(sys_turns, _as_turns(values["messages"],
                                                                      "user", n))}, {})
    if name == "alpaca":
        instruction = pc.fill_null(values["instruction"], "")
        extra = values.get("input")
        if extra is not None:
            has_input = pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(extra), ""), False)
            joined = pc.binary_join_element_wise(instruction, pc.fill_null(extra, ""), "\n\n")
            instruction = pc.if_else(has_input, joined, instruction)
        user = Turns.single("user", instruction, np.asarray(values["instruction"].is_valid(),
                                                            dtype=bool))
        answer = _as_turns(values["output"], "assistant", n)
        return Conversations({"messages": concat(sys_turns, user, answer)}, {})
    if name == "prompt_completion":
        prompt = _as_turns(values["prompt"], "user", n)
        completion = _as_turns(values["completion"], "assistant", n)
        return Conversations({"messages": concat(sys_turns, prompt, completion)}, {})
    if name == "preference":
        prompt = _as_turns(values["prompt"], "user", n)
        chosen = _as_turns(values["chosen"], "assistant", n)
        rejected = _as_turns(values["rejected"], "assistant", n)
        # responses written as full transcripts that repeat the prompt: keep the new turns
        k = prompt.lengths
        repeats = ((k > 0) & (shared_prefix(prompt, chosen) == k)
                   & (shared_prefix(prompt, rejected) == k))
        start = np.where(repeats, k, 0)
        return Conversations({"prompt": concat(sys_turns, prompt),
                              "chosen": chosen.slice(start), "rejected": rejected.slice(start)},
                             scores)
    if name == "preference_transcripts":
        prompt, chosen, rejected = split_shared_prefix(
            _as_turns(values["chosen"], "assistant", n),
            _as_turns(values["rejected"], "assistant", n))
        return Conversations({"prompt": prompt, "chosen": chosen, "rejected": rejected}, scores)
    raise UnknownLayout(f"no builder for layout {name!r}")


def split_shared_prefix(chosen: Turns, rejected: Turns) -> tuple[Turns, Turns, Turns]:
    """(prompt, chosen response, rejected response) from two full transcripts: the leading
    turns they share are the prompt."""
    k = shared_prefix(chosen, rejected)
    return chosen.slice(np.zeros(chosen.n, np.int64), k), chosen.slice(k), rejected.slice(k)
