"""Heuristic quality signals and selection: every rule on both sides of its threshold, presets,
recipes, the funnel, the CLI, and word splitting beyond English.

Where datatrove is installed the known-answer documents also go through its filters, which must
decide the same way.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import click
import pyarrow as pa
import pytest
import yaml
from click.testing import CliRunner

from curate.config import ConfigError
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.quality.cli import quality, stats
from curate.quality.rules import PRESETS, Recipe, Rule, load_recipe, resolve
from curate.quality.select import (
    QUALITY_SELECT,
    failures,
    funnel_from,
    funnel_png,
    select,
    stage_funnel,
)
from curate.quality.signals import QUALITY_SIGNALS, SignalsConfig, add_signals, compute_signals
from curate.quality.words import sentence_count, split_chunk, split_words
from curate.runner import plan_shards, run_stage
from schemas import read_shard, verify_stage
from tests.conftest import write_jsonl

RULES = {r.name: r for preset in PRESETS.values() for r in preset}


def unique_words(n: int, start: int = 0, length: int = 5) -> list[str]:
    """n distinct lower-case words of ``length`` letters (no stop words, no repeats)."""
    out = []
    for i in range(start, start + n):
        letters, k = [], i
        for _ in range(length - 1):
            letters.append(chr(ord("a") + k % 26))
            k //= 26
        out.append("q" + "".join(reversed(letters)))
    return out


def sentence_lines(n: int, start: int = 0) -> list[str]:
    """n distinct one-sentence lines with stop words and a full stop."""
    w = unique_words(4 * n, start)
    return [f"The {w[4 * i]} and {w[4 * i + 1]} saw {w[4 * i + 2]} with {w[4 * i + 3]}."
            for i in range(n)]


def outcome(text: str, rule: Rule) -> bool:
    """True when ``text`` passes ``rule`` alone."""
    table = add_signals(pa.table({"text": [text]}))
    return not failures(table, [rule])[0, 0]


# --- reference formulas for the repetition rules (Gopher's definitions, plain Python) -----------


def top_ngram_frac(words: list[str], n: int, text: str) -> float:
    grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count / len(text)


def dup_ngram_frac(words: list[str], n: int, text: str) -> float:
    seen, i, repeated = set(), 0, 0
    while i < len(words) - n + 1:
        gram = "".join(words[i:i + n])
        if gram in seen:
            repeated += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated / len(text)


def _crossing(make, measure, threshold: float, op: str) -> tuple[str, str]:
    """The last text (growing k) on the passing side and the first on the failing side."""
    prev = None
    for k in range(0, 400):
        text = make(k)
        value = measure(text)
        ok = value <= threshold if op == "max" else value >= threshold
        if not ok and prev is not None:
            return prev, text
        prev = text if ok else prev
    raise AssertionError("no crossing found")


def repetition_cases() -> dict[str, tuple[str, str]]:
    cases = {}
    filler = unique_words(400, 1000)
    for n, thr in ((2, 0.2), (3, 0.18), (4, 0.16)):
        phrase = " ".join(["tok"] * 0 + unique_words(n, 9000 + 10 * n))

        def make(k, phrase=phrase):
            return " ".join([phrase] * k + filler[:120])

        cases[f"gopher_top_{n}gram"] = _crossing(
            make, lambda t, n=n: top_ngram_frac(t.split(), n, t), thr, "max")
    for n, thr in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)):
        block = " ".join(unique_words(n, 20000 + 20 * n))

        def make(k, block=block):
            return " ".join(filler[:150] + [block] * (k + 1))

        cases[f"gopher_dup_{n}gram"] = _crossing(
            make, lambda t, n=n: dup_ngram_frac(t.split(), n, t), thr, "max")
    return cases


def known_answer_cases() -> dict[str, tuple[str, str]]:
    """Rule name -> (a document just passing it, a document just failing it)."""
    w = unique_words(1000)
    lines = sentence_lines(30)
    c = {
        "gopher_empty_text": ("a", ""),
        "gopher_short_doc": (" ".join(w[:50]), " ".join(w[:49])),
        "gopher_long_doc": (" ".join(["word"] * 100_000), " ".join(["word"] * 100_001)),
        "gopher_below_avg_threshold": (" ".join(["abc"] * 60), " ".join(["abc"] * 59 + ["ab"])),
        "gopher_above_avg_threshold": (" ".join(["abcdefghij"] * 60),
                                       " ".join(["abcdefghij"] * 59 + ["abcdefghijk"])),
        "gopher_too_many_hashes": (" ".join(w[:100] + ["#"] * 11),
                                   " ".join(w[:100] + ["#"] * 12)),
        "gopher_too_many_ellipsis": (" ".join(w[:100] + ["\u2026"] * 11),
                                     " ".join(w[:100] + ["\u2026"] * 12)),
        "gopher_too_many_bullets": ("\n".join([f"- {x}" for x in lines[:9]] + [lines[9]]),
                                    "\n".join(f"- {x}" for x in lines[:10])),
        "gopher_too_many_end_ellipsis": (
            "\n".join([x[:-1] + "..." for x in lines[:3]] + lines[3:10]),
            "\n".join([x[:-1] + "..." for x in lines[:4]] + lines[4:10])),
        "gopher_below_alpha_threshold": (" ".join(w[:80] + ["123"] * 20),
                                         " ".join(w[:79] + ["123"] * 21)),
        "gopher_too_few_stop_words": ("the " + " ".join(w[:60]) + " and",
                                      "the " + " ".join(w[:60]) + " And"),
        "gopher_dup_para_frac": ("\n\n".join(lines[:7] + lines[:3]),
                                 "\n\n".join(lines[:6] + lines[:4])),
        "gopher_dup_para_char_frac": ("x" * 56 + "\n\n" + "y" * 20 + "\n\n" + "y" * 20,
                                      "x" * 55 + "\n\n" + "y" * 20 + "\n\n" + "y" * 20),
        "gopher_dup_line_frac": ("\n".join(lines[:7] + lines[:3]),
                                 "\n".join(lines[:6] + lines[:4])),
        "gopher_dup_line_char_frac": ("x" * 58 + "\n" + "y" * 20 + "\n" + "y" * 20,
                                      "x" * 57 + "\n" + "y" * 20 + "\n" + "y" * 20),
        "fineweb_line_punct_ratio": (
            "\n".join(lines[:3] + [x[:-1] for x in lines[3:25]]),
            "\n".join(lines[:2] + [x[:-1] for x in lines[2:25]])),
        "fineweb_short_line_ratio": (
            "\n".join([f"{a} {b} {c}." for a, b, c in zip(w[:67], w[100:167], w[200:267],
                                                           strict=True)]
                      + sentence_lines(33, 3000)),
            "\n".join([f"{a} {b} {c}." for a, b, c in zip(w[:68], w[100:168], w[200:268],
                                                           strict=True)]
                      + sentence_lines(32, 3000))),
        "fineweb_char_dup_ratio": ("\n".join(sentence_lines(22, 4000) + ["aa bb cc."] * 2),
                                   "\n".join(sentence_lines(21, 4000) + ["aa bb cc."] * 2)),
        "fineweb_list_ratio": ("\n".join(" ".join(w[3 * i:3 * i + 3]) for i in range(10)),
                               "\n".join(" ".join(w[3 * i:3 * i + 3]) for i in range(11))),
    }
    # C4 checks lorem ipsum and "{" only on lines its line filter keeps: too short a line, or
    # (original C4) one without terminal punctuation, never gets that far
    six = "\n".join(lines[:6])
    c["c4_lorem_ipsum"] = (six + "\nLorem ipsum dolor sit amet", six + "\nLorem ipsum dolor sit.")
    c["c4fw_lorem_ipsum"] = (six + "\nLorem ipsum", six + "\nLorem ipsum dolor")
    c["c4_curly_bracket"] = (six + "\na {b} c", six + "\na {b} c.")
    c["c4fw_curly_bracket"] = (six + "\na {b}", six + "\na {b} c")
    c["c4_too_few_sentences"] = ("\n".join(lines[:5]), "\n".join(lines[:4]))
    c["c4fw_too_few_sentences"] = ("\n".join(x[:-1] for x in lines[:5]) + "\nOne two",
                                   "\n".join(x[:-1] for x in lines[:4]) + "\nOne two")
    c.update(repetition_cases())
    return c


CASES = known_answer_cases()


def test_every_preset_rule_has_a_known_answer_case():
    assert set(RULES) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_both_sides_of_threshold(name):
    passing, failing = CASES[name]
    rule = RULES[name]
    assert outcome(passing, rule), f"{name} should pass"
    assert not outcome(failing, rule), f"{name} should fail"


@pytest.mark.parametrize("name", sorted(n for n in CASES if "gram" in n))
def test_repetition_signals_equal_reference(name):
    n = int(name.split("_")[2].removesuffix("gram"))
    fn = top_ngram_frac if "top" in name else dup_ngram_frac
    for text in CASES[name]:
        value = compute_signals(pa.table({"text": [text]}))[RULES[name].column][0]
        assert math.isclose(value, fn(text.split(), n, text), rel_tol=1e-12)


def test_threshold_value_itself_passes():
    # 0.2 exactly is not above 0.2, 50 words exactly is not below 50
    text = "x" * 56 + "\n\n" + "y" * 20 + "\n\n" + "y" * 20
    s = compute_signals(pa.table({"text": [text]}))
    assert s["q_gopher_dup_para_char_frac"][0] == 0.2
    assert compute_signals(pa.table({"text": [" ".join(unique_words(50))]}))[
        "q_gopher_word_count"][0] == 50


# --- datatrove agrees on the same documents -----------------------------------------------------


GROUPS = {"gopher_rep": ("GopherRepetitionFilter", {}), "gopher_q": ("GopherQualityFilter", {}),
          "c4": ("C4QualityFilter", {}),
          "c4fw": ("C4QualityFilter", {"filter_no_terminal_punct": False})}


def _group(name: str) -> str:
    if name.startswith("fineweb"):
        return "fineweb"
    if name.startswith("c4fw"):
        return "c4fw"
    if name.startswith("c4"):
        return "c4"
    rep = {r.name for r in PRESETS["gopher"][:14]}
    return "gopher_rep" if name in rep else "gopher_q"


@pytest.mark.parametrize("name", sorted(n for n in CASES if n != "gopher_long_doc"))
def test_datatrove_decides_the_same(name):
    pytest.importorskip("spacy")
    filters = pytest.importorskip("datatrove.pipeline.filters")
    from datatrove.data import Document

    group = _group(name)
    for text, expected in zip(CASES[name], (True, False), strict=True):
        doc = Document(text=text, id="x")
        if group == "fineweb":  # FineWeb's filter sees the text C4 (FineWeb variant) left
            if filters.C4QualityFilter(filter_no_terminal_punct=False,
                                       min_num_sentences=-1).filter(doc) is not True:
                continue
            verdict = filters.FineWebQualityFilter().filter(doc)
        else:
            cls, kwargs = GROUPS[group]
            verdict = getattr(filters, cls)(**kwargs).filter(doc)
        theirs = verdict is True
        preset = {"gopher_rep": "gopher", "gopher_q": "gopher", "c4": "c4"}.get(group, "fineweb")
        rules = [r for r in PRESETS[preset] if _group(r.name) == group]
        ours = not failures(add_signals(pa.table({"text": [text]})), rules).any()
        assert ours == theirs, (name, expected, verdict)


# --- presets and recipes -----------------------------------------------------------------------


def test_presets_compose_like_the_fineweb_pipeline():
    names = [r.name for r in PRESETS["fineweb"]]
    assert names == ([r.name for r in PRESETS["gopher"]] + [r.name for r in PRESETS["c4_fineweb"]]
                     + [n for n in names if n.startswith("fineweb_")])
    assert names[0] == "gopher_empty_text" and names[-1] == "fineweb_list_ratio"
    assert {r.name for r in PRESETS["c4"]} == {"c4_lorem_ipsum", "c4_curly_bracket",
                                               "c4_too_few_sentences"}
    assert RULES["gopher_short_doc"].threshold == 50
    assert RULES["fineweb_short_line_ratio"].threshold == 0.67
    assert PRESETS["none"] == ()


def test_c4_and_c4_fineweb_differ_on_terminal_punctuation():
    text = "\n".join(x[:-1] for x in sentence_lines(8))  # no line ends in punctuation
    table = add_signals(pa.table({"text": [text]}))
    assert table.column("q_c4_sentences")[0].as_py() == 0
    assert table.column("q_c4fw_sentences")[0].as_py() == 8
    assert failures(table, list(PRESETS["c4"])).any()
    assert not failures(table, list(PRESETS["c4_fineweb"])).any()


def test_custom_recipe_overrides_disables_adds(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"quality_select": {"preset": "gopher", "rules": {
        "gopher_short_doc": {"threshold": 3},
        "gopher_too_few_stop_words": {"enabled": False},
        "gopher_below_alpha_threshold": {"langs": ["de"]},
        "tiny": {"column": "q_chars", "op": "min", "threshold": 10}}}}))
    recipe = load_recipe(path)
    rules = {r.name: r for r in resolve(recipe)}
    assert rules["gopher_short_doc"].threshold == 3
    assert "gopher_too_few_stop_words" not in rules
    assert rules["gopher_below_alpha_threshold"].langs == ("de",)
    assert list(rules)[-1] == "tiny"
    words = unique_words(60)
    good = "the " + " ".join(words) + " and"
    numeric = good + " " + " ".join(str(i) for i in range(100, 120))  # 20 of 82 words: 0.76
    table = add_signals(pa.table({"text": [good, numeric, numeric, "the and"],
                                  "lang": ["en", "en", "de", "en"]}))
    out = select(table, resolve(recipe))
    assert out.kept.column("text").to_pylist() == [good, numeric]  # alpha rule: de only
    assert out.rejected.column("lang").to_pylist() == ["de", "en"]
    assert out.rejected.column("reject_reason").to_pylist() == [
        "gopher_below_alpha_threshold", "gopher_top_2gram"]
    failed = out.rejected.column("failed_rules").to_pylist()[1]
    assert "gopher_short_doc" in failed and failed[-1] == "tiny"
    assert "gopher_too_few_stop_words" not in failed


def test_recipe_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        resolve(Recipe(preset="nope"))
    with pytest.raises(ValueError, match="needs column"):
        resolve(Recipe(rules={"new_rule": {"threshold": 1}}))
    with pytest.raises(ValueError, match="not in preset"):
        resolve(Recipe(rules={"gopher_shortdoc": {"enabled": False}}))
    with pytest.raises(ConfigError):
        load_recipe(None, ("rules.gopher_short_doc.treshold=3",))
    with pytest.raises(ValueError, match="run the quality signals stage first"):
        failures(pa.table({"text": ["x"]}), list(PRESETS["gopher"]))


def test_first_and_all_failed_rules_and_detail():
    table = add_signals(pa.table({"text": ["", "the " + " ".join(unique_words(60)) + " and",
                                           "## ## ## x"]}))
    out = select(table, list(PRESETS["gopher"]))
    rej = out.rejected.to_pylist()
    assert out.rows_in == 3 == out.kept.num_rows + out.rejected.num_rows
    assert [r["reject_reason"] for r in rej] == ["gopher_empty_text", "gopher_top_2gram"]
    assert rej[0]["reject_detail"] == "q_chars 0 < 1"
    assert rej[0]["failed_rules"] == ["gopher_empty_text", "gopher_short_doc",
                                      "gopher_too_few_stop_words"]
    assert rej[1]["failed_rules"][:2] == ["gopher_top_2gram", "gopher_top_3gram"]
    assert "gopher_too_many_hashes" in rej[1]["failed_rules"]
    assert rej[1]["reject_detail"] == "q_gopher_top_2gram_char_frac 1.5 > 0.2"  # "# #" x 3
    assert all(r["reject_stage"] == "quality_select" for r in rej)


# --- stages, funnel, CLI -------------------------------------------------------------------


def corpus() -> list[dict]:
    good = ["\n".join(sentence_lines(8, 100 * i)) for i in range(6)]
    return ([{"id": f"g{i}", "text": t} for i, t in enumerate(good)]
            + [{"id": "short", "text": "Too short to keep."},
               {"id": "menu", "text": "\n".join(["Home", "About", "Contact", "Login"] * 3)},
               {"id": "lorem", "text": good[0] + "\nLorem ipsum dolor sit amet, every day."},
               {"id": "numbers", "text": " ".join(str(i) for i in range(300))}])


def ingest(tmp: Path, records: list[dict]) -> Path:
    write_jsonl(tmp / "raw" / "part0.jsonl", records)
    out = tmp / "docs"
    assert run_stage(INGEST, plan_ingest(tmp / "raw"), out, IngestConfig(), progress=False).ok
    return out


def test_stages_conserve_rows_and_funnel(tmp_path):
    docs = ingest(tmp_path, corpus())
    sig = tmp_path / "signals"
    report = run_stage(QUALITY_SIGNALS, plan_shards(docs), sig, SignalsConfig(), progress=False)
    assert report.ok and report.rows_in == report.rows_kept == 10 and report.rows_rejected == 0
    sel = tmp_path / "selected"
    report = run_stage(QUALITY_SELECT, plan_shards(sig), sel, Recipe(), progress=False)
    assert report.ok and report.rows_in == report.rows_kept + report.rows_rejected == 10
    assert verify_stage(sel).ok and verify_stage(sig).ok
    kept = read_shard(next(sel.glob("*.arrow")))
    assert sorted(kept.column("id").to_pylist()) == [f"g{i}" for i in range(6)]
    assert report.reasons == Counter({"gopher_top_2gram": 1, "gopher_dup_line_frac": 1,
                                      "c4fw_lorem_ipsum": 1, "gopher_below_avg_threshold": 1})
    funnel = stage_funnel(sel)
    assert (funnel.docs_in, funnel.kept_docs) == (10, 6)
    by_rule = {r.rule: r for r in funnel.rows}
    assert by_rule["c4fw_lorem_ipsum"].first_docs == 1
    assert by_rule["c4fw_lorem_ipsum"].first_chars == len(corpus()[8]["text"])
    assert by_rule["gopher_short_doc"].first_docs == 0
    assert by_rule["gopher_short_doc"].any_docs == 2  # short and menu (digits are words)
    assert funnel.chars_in == sum(len(r["text"]) for r in corpus())
    order = [r.rule for r in funnel.rows]
    assert order.index("gopher_dup_line_frac") < order.index("gopher_top_2gram") < order.index(
        "gopher_below_avg_threshold") < order.index("c4fw_lorem_ipsum")
    table = funnel.markdown()
    assert "| c4fw_lorem_ipsum | 1 | 10.0% |" in table and "**6**" in table
    assert funnel_png(funnel).startswith(b"\x89PNG")


def test_funnel_from_tables():
    rejected = pa.table({"q_chars": [10, 20, 30], "reject_reason": ["a", "b", "a"],
                         "failed_rules": [["a", "b"], ["b"], ["a"]]})
    f = funnel_from([pa.table({"q_chars": [5, 5]})], [rejected])
    assert [(r.rule, r.first_docs, r.first_chars, r.any_docs, r.any_chars) for r in f.rows] == [
        ("a", 2, 40, 2, 40), ("b", 1, 20, 2, 30)]
    assert (f.docs_in, f.chars_in, f.kept_docs, f.kept_chars) == (5, 70, 2, 10)


def test_cli_signals_select_stats(tmp_path):
    docs = ingest(tmp_path, corpus())
    runner = CliRunner()
    res = runner.invoke(quality, ["signals", "--input", str(docs), "--output",
                                  str(tmp_path / "sig"), "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    recipe = tmp_path / "r.yaml"
    recipe.write_text("preset: fineweb\nrules:\n  gopher_short_doc: {threshold: 3}\n")
    res = runner.invoke(quality, ["select", "--input", str(tmp_path / "sig"), "--output",
                                  str(tmp_path / "sel"), "--workers", "1", "--quiet",
                                  "--config", str(recipe), "--funnel-image",
                                  str(tmp_path / "f.png")])
    assert res.exit_code == 0, res.output
    assert "rejected 4" in res.output and "| c4fw_lorem_ipsum |" in res.output
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
    res = runner.invoke(stats, [str(tmp_path / "sel"), "--image", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    assert "gopher_dup_line_frac" in res.output and "**6**" in res.output
    res = runner.invoke(quality, ["select", "--input", str(tmp_path / "sig"), "--output",
                                  str(tmp_path / "x"), "--set", "preset=nope"])
    assert res.exit_code != 0 and "unknown preset" in res.output
    res = runner.invoke(quality, ["select", "--input", str(tmp_path / "sig"), "--output",
                                  str(tmp_path / "y"), "--preset", "c4", "--quiet"])
    assert res.exit_code == 0, res.output


def test_stage_options_match_curate_cli():
    import curate.cli
    from curate.quality.cli import stage_options

    def names(decorate):
        cmd = click.command()(decorate(lambda **kw: None))
        return [(p.name, p.opts, p.default, p.multiple, p.is_flag) for p in cmd.params]

    assert names(stage_options) == names(curate.cli.stage_options)


# --- words ------------------------------------------------------------------------------------


def test_english_words_as_spacy_splits_them():
    assert split_words("I don't think it's well-known, Mr. Smith... (see U.S. e.g. 5pm $10)") == [
        "I", "do", "n't", "think", "it", "'s", "well", "-", "known", ",", "Mr.", "Smith", "...",
        "(", "see", "U.S.", "e.g.", "5", "pm", "$", "10", ")"]
    assert split_chunk("http://example.com/a?b=1.") == ("http://example.com/a?b=1", ".")
    assert split_chunk("cannot") == ("can", "not")
    assert split_chunk("Steward(s):") == ("Steward(s", "):")  # spaCy re-joins the emoticon


def test_german_words():
    assert split_words("Die Straßenbahn-Haltestelle (z.B. in Köln) öffnet um 5 Uhr.") == [
        "Die", "Straßenbahn", "-", "Haltestelle", "(", "z.", "B.", "in", "Köln", ")", "öffnet",
        "um", "5", "Uhr", "."]
    text = "Der Hund und die Katze schlafen. " * 20
    cfg = SignalsConfig(stop_words_by_lang={"de": ["der", "die", "und", "das"]})
    s = compute_signals(pa.table({"text": [text], "lang": ["de"]}), cfg)
    assert s["q_gopher_stop_words"][0] == 2  # "die", "und" ("Der" is capitalised)
    assert compute_signals(pa.table({"text": [text], "lang": ["de"]}))[
        "q_gopher_stop_words"][0] == 0  # English list by default, as datatrove


def test_unspaced_scripts_are_one_word_per_character():
    assert split_words("东京是日本的首都。") == list("东京是日本的首都。")
    assert split_words("私はカタカナ") == ["私", "は", "カ", "タ", "カ", "ナ"]
    assert split_words("ภาษาไทย ok") == ["ภ", "า", "ษ", "า", "ไ", "ท", "ย", "ok"]
    assert split_words("한국어 문장") == ["한국어", "문장"]  # Hangul is written with spaces
    s = compute_signals(pa.table({"text": ["东京是日本的首都。"]}))
    assert s["q_gopher_word_count"][0] == 8


def test_sentence_count_sees_whitespace_tokens():
    ends = frozenset(".?!")
    assert sentence_count("One. Two three! Four", ends) == 3
    assert sentence_count("Hello.  :)", ends) == 2  # the double space is a token
    assert sentence_count("Hello. :)", ends) == 1
    assert sentence_count("", ends) == 0


def test_line_breaks_and_odd_whitespace():
    text = "a b c.\r\nd e f.\u2028g h i.\x0cj k l.\n\n\xa0m n o."
    s = compute_signals(pa.table({"text": [text]}))
    assert s["q_c4_sentences"][0] == 5
    assert s["q_gopher_bullet_lines_ratio"][0] == 0.0
