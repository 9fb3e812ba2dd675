"""Validation of labelled examples: the rules a conversation must meet to be trained on.

Rules are checked in a fixed order and a row gets the first reason it fails (the reasons are
what ``rejected/`` and the summaries count):

- ``no_turns``: an SFT conversation without turns;
- preference only: ``chosen_equals_rejected``, ``empty_response`` (chosen or rejected has no
  turns), ``no_prompt``;
- ``unknown_role``: a role other than system / user / assistant (aliases such as ShareGPT's
  human / gpt were mapped at ingest);
- ``empty_turn``: a turn with blank content;
- ``misplaced_system``: a system turn anywhere but first;
- ``not_alternating``: after the optional system turn, turns must go user, assistant, user...
  (``require_user_first: false`` lets the assistant open);
- ``last_turn_not_assistant``: the conversation (prompt + response, for each response) must
  end with the assistant's turn;
- preference only: ``response_not_assistant``: a response must start with the assistant;
- ``too_long``: more than ``max_turns`` turns or ``max_chars`` characters.

A preference pair is checked as two conversations, prompt + chosen and prompt + rejected, and
details say where the problem is (``prompt turn 2``, ``rejected turn 1``). Checks run on the
flat turn arrays of a whole shard; Python only formats the details of rejected rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.config import StageConfig
from curate.labelled.layouts import ROLES, Turns, concat, equal
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import PREFERENCE, SFT, read_shard

PARTS = {"sft": ("messages",), "preference": ("prompt", "chosen", "rejected")}


class ValidationConfig(StageConfig):
    """Limits and the alternation rule."""

    max_turns: int = Field(256, ge=1)
    """Most turns a conversation (prompt + response) may have."""
    max_chars: int = Field(200_000, ge=1)
    """Most characters of content a conversation (prompt + response) may have."""
    require_user_first: bool = True
    """The first non-system turn must be the user's."""


Labeller = Callable[[np.ndarray, np.ndarray], list[str]]


class Problems:
    """Reason and detail per row; the first reason a row gets is the one it keeps."""

    def __init__(self, n: int):
        self.reason = np.full(n, None, dtype=object)
        self.detail = np.full(n, None, dtype=object)

    def add(self, rows: np.ndarray, reason: str, details: list[str] | Callable[[], list[str]]
            ) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        fresh = self.reason[rows] == None  # noqa: E711 (element-wise on an object array)
        if not fresh.any():
            return
        texts = details() if callable(details) else details
        rows_new = rows[fresh]
        self.reason[rows_new] = reason
        self.detail[rows_new] = np.asarray(texts, dtype=object)[fresh]

    @property
    def ok(self) -> np.ndarray:
        return self.reason == None  # noqa: E711

    def arrays(self) -> tuple[pa.Array, pa.Array]:
        return (pa.array(self.reason.tolist(), pa.string()),
                pa.array(self.detail.tolist(), pa.string()))


def kind_of(table: pa.Table) -> str:
    """``preference`` for a table with prompt/chosen/rejected, ``sft`` for messages."""
    if "messages" in table.column_names:
        return "sft"
    if {"prompt", "chosen", "rejected"} <= set(table.column_names):
        return "preference"
    raise ValueError(f"not a labelled table (columns: {', '.join(table.column_names)})")


def _first_per_row(flags: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows with a flagged turn, the index of each row's first flagged turn)."""
    bad = np.flatnonzero(flags)
    if not len(bad):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first_rows, first = np.unique(rows[bad], return_index=True)
    return first_rows, bad[first]


def _plain_labels(rows: np.ndarray, pos: np.ndarray) -> list[str]:
    return [f"turn {p + 1}" for p in pos.tolist()]


def check_conversation(turns: Turns, cfg: ValidationConfig, problems: Problems,
                       label: Labeller = _plain_labels, whole: str = "") -> None:
    """Add the conversation rules' reasons for every row of ``turns``; ``label`` names a turn
    in details, ``whole`` prefixes details about the whole conversation."""
    rows, pos = turns.rows(), turns.positions()
    lengths = turns.lengths
    roles = turns.roles

    def role_at(i: np.ndarray) -> list[str]:
        return roles.take(pa.array(i, pa.int64())).to_pylist()

    def flagged(flags: np.ndarray, reason: str, fmt: Callable[[str, str], str]) -> None:
        r, i = _first_per_row(flags, rows)
        if len(r):
            problems.add(r, reason, lambda: [fmt(where, role) for where, role in
                                             zip(label(r, pos[i]), role_at(i), strict=True)])

    known = np.asarray(pc.is_in(roles, pa.array(ROLES, pa.string())), dtype=bool)
    is_system = np.asarray(pc.equal(roles, "system"), dtype=bool)
    is_user = np.asarray(pc.equal(roles, "user"), dtype=bool)
    is_assistant = np.asarray(pc.equal(roles, "assistant"), dtype=bool)
    blank = np.asarray(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(turns.contents)), 0),
                       dtype=bool)

    flagged(~known, "unknown_role", lambda w, r: f"{w} has role {r!r} (known: "
                                                 f"{', '.join(ROLES)})")
    flagged(blank, "empty_turn", lambda w, r: f"{w} ({r}) is empty")
    flagged(is_system & (pos > 0), "misplaced_system",
            lambda w, r: f"{w} is a system turn; only the first turn may be")

    has_system = np.zeros(turns.n, dtype=bool)
    nonempty = lengths > 0
    has_system[nonempty] = is_system[turns.offsets[:-1][nonempty]]
    k = pos - has_system[rows]
    if cfg.require_user_first:
        starts_user = np.ones(turns.n, dtype=bool)
    else:
        first = turns.offsets[:-1] + has_system
        starts_user = np.zeros(turns.n, dtype=bool)
        valid = first < turns.offsets[1:]
        starts_user[valid] = is_user[first[valid]]
    expect_user = (k % 2 == 0) == starts_user[rows]
    wrong = ~is_system & (k >= 0) & (is_user != expect_user)
    flagged(wrong, "not_alternating",
            lambda w, r: f"{w} is {r}, expected "
                         f"{'assistant' if r == 'user' else 'user'}")

    last = turns.offsets[1:][nonempty] - 1
    not_last = ~is_assistant[last]
    r = np.flatnonzero(nonempty)[not_last]
    if len(r):
        problems.add(r, "last_turn_not_assistant", lambda: [
            f"the last turn ({w}) is {role}; the assistant must answer last"
            for w, role in zip(label(r, pos[last[not_last]]), role_at(last[not_last]),
                               strict=True)])

    too_many = np.flatnonzero(lengths > cfg.max_turns)
    problems.add(too_many, "too_long",
                 [f"{whole}{n} turns > max_turns {cfg.max_turns}"
                  for n in lengths[too_many].tolist()])
    chars = turns.chars()
    too_big = np.flatnonzero(chars > cfg.max_chars)
    problems.add(too_big, "too_long",
                 [f"{whole}{c:,} chars > max_chars {cfg.max_chars}"
                  for c in chars[too_big].tolist()])


def sft_problems(messages: Turns, cfg: ValidationConfig) -> Problems:
    """Reasons for SFT conversations."""
    problems = Problems(messages.n)
    empty = np.flatnonzero(messages.lengths == 0)
    problems.add(empty, "no_turns", ["the conversation has no turns"] * len(empty))
    check_conversation(messages, cfg, problems)
    return problems


def preference_problems(prompt: Turns, chosen: Turns, rejected: Turns,
                        cfg: ValidationConfig) -> Problems:
    """Reasons for preference pairs: pair rules, then each side as a conversation."""
    problems = Problems(prompt.n)
    same = np.flatnonzero(equal(chosen, rejected))
    problems.add(same, "chosen_equals_rejected",
                 [f"chosen and rejected are identical ({n} turn{'s' if n != 1 else ''})"
                  for n in chosen.lengths[same].tolist()])
    for side, turns in (("chosen", chosen), ("rejected", rejected)):
        empty = np.flatnonzero(turns.lengths == 0)
        problems.add(empty, "empty_response", [f"{side} has no turns"] * len(empty))
    no_prompt = np.flatnonzero(prompt.lengths == 0)
    problems.add(no_prompt, "no_prompt", ["the prompt has no turns"] * len(no_prompt))
    n_prompt = prompt.lengths
    for side, turns in (("chosen", chosen), ("rejected", rejected)):

        def label(rows: np.ndarray, pos: np.ndarray, side: str = side) -> list[str]:
            lp = n_prompt[rows]
            return [f"prompt turn {p + 1}" if p < n else f"{side} turn {p - n + 1}"
                    for p, n in zip(pos.tolist(), lp.tolist(), strict=True)]

        check_conversation(concat(prompt, turns), cfg, problems, label,
                           whole=f"prompt + {side}: ")
        starts = turns.offsets[:-1]
        nonempty = np.flatnonzero(turns.lengths > 0)
        first_roles = turns.roles.take(pa.array(starts[nonempty]))
        bad = np.asarray(pc.not_equal(first_roles, "assistant"), dtype=bool)
        rows = nonempty[bad]
        problems.add(rows, "response_not_assistant",
                     [f"{side} turn 1 is {r}; a response starts with the assistant's turn"
                      for r in first_roles.filter(pa.array(bad)).to_pylist()])
    return problems


def turns_of(table: pa.Table, part: str) -> Turns:
    return Turns.from_lists(table.column(part))


def table_problems(table: pa.Table, cfg: ValidationConfig) -> Problems:
    """The validation reasons of every row of an ``sft`` or ``preference`` table."""
    if kind_of(table) == "sft":
        return sft_problems(turns_of(table, "messages"), cfg)
    return preference_problems(*(turns_of(table, p) for p in PARTS["preference"]), cfg)


def split_rejected(table: pa.Table, reason: pa.Array, detail: pa.Array, stage: str
                   ) -> StageOutput:
    """Kept rows (reason null) and rejected rows with ``reject_stage/reason/detail``."""
    drop = pc.is_valid(reason)
    rejected = table.filter(drop)
    n = rejected.num_rows
    rejected = (rejected.append_column("reject_stage", pa.repeat(pa.scalar(stage), n))
                .append_column("reject_reason", reason.filter(drop))
                .append_column("reject_detail", detail.filter(drop)))
    return StageOutput(kept=table.filter(pc.invert(drop)), rejected=rejected,
                       rows_in=table.num_rows)


def validate_examples(table: pa.Table, cfg: ValidationConfig, stage: str) -> StageOutput:
    """Keep the rows that pass every rule; reject the others with their first reason."""
    reason, detail = table_problems(table, cfg).arrays()
    return split_rejected(table, reason, detail, stage)


def _validate_unit(unit: WorkUnit, cfg: ValidationConfig) -> StageOutput:
    (path,) = unit.inputs
    table = read_shard(path)
    return validate_examples(table, cfg, f"{kind_of(table)}_validate")


SFT_VALIDATE = Stage(name="sft_validate", version="1", output_kind=SFT, process=_validate_unit)
PREFERENCE_VALIDATE = Stage(name="preference_validate", version="1", output_kind=PREFERENCE,
                            process=_validate_unit)
VALIDATE_STAGES = {"sft": SFT_VALIDATE, "preference": PREFERENCE_VALIDATE}
