"""Selection rules over the signal columns, the published presets, and YAML recipes.

A rule is a signal column, a direction and a threshold: ``min`` fails a document whose value
is below the threshold, ``max`` one whose value is above it (the comparisons datatrove makes,
so a value equal to the threshold passes). A null signal (the rule does not apply: a ratio
over zero words) passes.

Presets carry datatrove's default thresholds:

- ``gopher``: ``GopherRepetitionFilter()`` then ``GopherQualityFilter()``;
- ``c4``: ``C4QualityFilter()`` as published (lines must end in terminal punctuation);
- ``c4_fineweb``: C4 as FineWeb runs it (``filter_no_terminal_punct=False``);
- ``fineweb``: the FineWeb pipeline's order, ``gopher`` + ``c4_fineweb`` + the FineWeb rules
  (``FineWebQualityFilter()``);
- ``none``: no rules, to write a recipe from scratch.

A recipe picks a preset and changes it::

    preset: fineweb
    rules:
      gopher_short_doc: {threshold: 30}        # a new threshold
      c4fw_curly_bracket: {enabled: false}     # switch a rule off
      gopher_too_few_stop_words: {langs: [en]} # only for documents whose lang is en
      very_long: {column: q_chars, op: max, threshold: 500000}   # a new rule, added last
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from curate.config import StageConfig, load_config

Op = Literal["min", "max"]


@dataclass(frozen=True)
class Rule:
    """One threshold on one signal column."""

    name: str
    column: str
    op: Op
    threshold: float
    doc: str = ""
    langs: tuple[str, ...] = field(default=())
    """Apply only to documents whose ``lang`` is one of these (empty: all documents)."""

    @property
    def symbol(self) -> str:
        """The comparison that fails a document, for reject details."""
        return "<" if self.op == "min" else ">"


def _r(name: str, column: str, op: Op, threshold: float, doc: str) -> Rule:
    return Rule(name, column, op, threshold, doc)


GOPHER_REPETITION = (
    _r("gopher_empty_text", "q_chars", "min", 1, "characters (datatrove: empty)"),
    _r("gopher_dup_para_frac", "q_gopher_dup_para_frac", "max", 0.3,
       "share of paragraphs that repeat an earlier one"),
    _r("gopher_dup_para_char_frac", "q_gopher_dup_para_char_frac", "max", 0.2,
       "characters in repeated paragraphs / all characters"),
    _r("gopher_dup_line_frac", "q_gopher_dup_line_frac", "max", 0.3,
       "share of lines that repeat an earlier one"),
    _r("gopher_dup_line_char_frac", "q_gopher_dup_line_char_frac", "max", 0.2,
       "characters in repeated lines / all characters"),
    *(_r(f"gopher_top_{n}gram", f"q_gopher_top_{n}gram_char_frac", "max", t,
         f"characters of the most frequent word {n}-gram (times its count) / all characters")
      for n, t in ((2, 0.2), (3, 0.18), (4, 0.16))),
    *(_r(f"gopher_dup_{n}gram", f"q_gopher_dup_{n}gram_char_frac", "max", t,
         f"characters in repeated word {n}-grams / all characters")
      for n, t in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))),
)

GOPHER_QUALITY = (
    _r("gopher_short_doc", "q_gopher_word_count", "min", 50, "words (not counting symbols)"),
    _r("gopher_long_doc", "q_gopher_word_count", "max", 100_000, "words (not counting symbols)"),
    _r("gopher_below_avg_threshold", "q_gopher_mean_word_length", "min", 3,
       "mean word length in characters"),
    _r("gopher_above_avg_threshold", "q_gopher_mean_word_length", "max", 10,
       "mean word length in characters"),
    _r("gopher_too_many_hashes", "q_gopher_hash_ratio", "max", 0.1, "'#' per word"),
    _r("gopher_too_many_ellipsis", "q_gopher_ellipsis_ratio", "max", 0.1, "ellipses per word"),
    _r("gopher_too_many_bullets", "q_gopher_bullet_lines_ratio", "max", 0.9,
       "share of lines starting with a bullet"),
    _r("gopher_too_many_end_ellipsis", "q_gopher_ellipsis_lines_ratio", "max", 0.3,
       "share of lines ending with an ellipsis"),
    _r("gopher_below_alpha_threshold", "q_gopher_alpha_words_ratio", "min", 0.8,
       "share of words with a letter"),
    _r("gopher_too_few_stop_words", "q_gopher_stop_words", "min", 2,
       "distinct stop words present (datatrove: gopher_enough_stop_words)"),
)


def _c4(prefix: str, name: str) -> tuple[Rule, ...]:
    return (
        _r(f"{name}_lorem_ipsum", f"{prefix}_lorem_ipsum_lines", "max", 0,
           "kept lines containing 'lorem ipsum'"),
        _r(f"{name}_curly_bracket", f"{prefix}_curly_bracket_lines", "max", 0,
           "kept lines containing '{'"),
        _r(f"{name}_too_few_sentences", f"{prefix}_sentences", "min", 5,
           "sentences in the lines the C4 line filter keeps"),
    )


C4 = _c4("q_c4", "c4")
C4_FINEWEB = _c4("q_c4fw", "c4fw")

FINEWEB = (
    _r("fineweb_line_punct_ratio", "q_fineweb_line_punct_ratio", "min", 0.12,
       "share of lines ending in terminal punctuation"),
    _r("fineweb_short_line_ratio", "q_fineweb_short_line_ratio", "max", 0.67,
       "share of lines of at most 30 characters"),
    _r("fineweb_char_dup_ratio", "q_fineweb_char_dup_ratio", "max", 0.01,
       "characters in repeated lines / characters"),
    _r("fineweb_list_ratio", "q_fineweb_newline_ratio", "max", 0.3, "newlines per word"),
)

PRESETS: dict[str, tuple[Rule, ...]] = {
    "gopher": GOPHER_REPETITION + GOPHER_QUALITY,
    "c4": C4,
    "c4_fineweb": C4_FINEWEB,
    "fineweb": GOPHER_REPETITION + GOPHER_QUALITY + C4_FINEWEB + FINEWEB,
    "none": (),
}


class RuleSpec(BaseModel):
    """A recipe's entry for one rule: changes to a preset rule, or a whole new rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    op: Op | None = None
    threshold: float | None = None
    enabled: bool = True
    langs: list[str] | None = None


class Recipe(StageConfig):
    """A preset and the changes made to it: the selection stage's config."""

    preset: str = "fineweb"
    rules: dict[str, RuleSpec] = Field(default_factory=dict)


def resolve(recipe: Recipe) -> list[Rule]:
    """The rules a recipe applies, in order (preset order, then new rules as listed)."""
    if recipe.preset not in PRESETS:
        raise ValueError(f"unknown preset {recipe.preset!r}; one of {', '.join(PRESETS)}")
    rules = {r.name: r for r in PRESETS[recipe.preset]}
    for name, spec in recipe.rules.items():
        old = rules.get(name)
        if old is None:
            missing = [k for k in ("column", "op", "threshold") if getattr(spec, k) is None]
            if missing:
                raise ValueError(f"rule {name!r} is not in preset {recipe.preset!r}: a new rule "
                                 f"needs {', '.join(missing)}")
            old = Rule(name, spec.column or "", spec.op or "min", spec.threshold or 0.0)
        changes = {k: getattr(spec, k) for k in ("column", "op", "threshold")
                   if getattr(spec, k) is not None}
        if spec.langs is not None:
            changes["langs"] = tuple(spec.langs)
        rules[name] = replace(old, **changes)
        if not spec.enabled:
            del rules[name]
    return list(rules.values())


def load_recipe(path: Path | None = None, overrides: tuple[str, ...] = (),
                section: str = "quality_select") -> Recipe:
    """A recipe from YAML (its ``quality_select:`` section when it has one) and ``--set``s."""
    recipe = load_config(Recipe, path, overrides, section=section)
    resolve(recipe)  # fail early on unknown presets and incomplete rules
    return recipe
