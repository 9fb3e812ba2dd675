"""Tokenizer training: byte-level BPE on documents shards that round-trips any text, keeps its
special tokens apart, loads in transformers offline with a ChatML template, and is the same
byte for byte when trained twice."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from curate import demo_text
from curate.config import ConfigError, load_config
from curate.eval_extraction import WCXB_DEV_DIR
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.runner import run_stage
from curate.tokenizer import (
    METADATA_FILE,
    TextStream,
    TokenizerConfig,
    load_tokenizer,
    token_dtype_for,
    train_tokenizer,
    training_shards,
)
from schemas import read_shard, shard_paths
from tests.conftest import run_cli, write_jsonl

VOCAB = 1000
SPECIALS = {"<|begin_of_text|>": 0, "<|end_of_text|>": 1, "<|pad|>": 2, "<|im_start|>": 3,
            "<|im_end|>": 4}
HARD_TEXTS = [
    "Plain ASCII: the quick brown fox jumps over the lazy dog; 1234567890 !@#$%^&*()",
    " leading space, trailing newline\n",
    "Crème brûlée à l'œuf, Straße, señor, ÅNGSTRÖM, naïve café",
    "e\u0301 combining accent, \u00a0no-break space, zero\u200bwidth",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "emoji 👩‍👩‍👧‍👦 🚲💨 🇫🇷 ✅",
    "whitespace   runs\t\ttabs\n\n\n  indented\r\nwindows   \n",
    "",
    "    ",
    "def f(x):\n    return {'a': [x ** 2 for x in range(10)]}\n",
]
CHAT = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a river."},
        {"role": "assistant", "content": "The Alder Brook."}]


def _records() -> list[dict]:
    """Real prose: the demo site's sentence clusters (English, French, German, Spanish)."""
    records = []
    for topic in demo_text.EN_TOPICS + demo_text.FOREIGN_TOPICS:
        for k, cluster in enumerate(topic.clusters):
            records.append({"id": f"{topic.slug}-{topic.lang}-{k}", "text": " ".join(cluster)})
    records.append({"id": "intl", "text": " ".join(HARD_TEXTS[2:7])})
    return records


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tokdocs")
    records = _records()
    for f in range(2):
        write_jsonl(tmp / "raw" / f"part{f}.jsonl", records[f::2])
    out = tmp / "docs"
    assert run_stage(INGEST, plan_ingest(tmp / "raw"), out, IngestConfig(), progress=False).ok
    return out


@pytest.fixture(scope="module")
def trained(docs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    info = train_tokenizer([docs], out, TokenizerConfig(vocab_size=VOCAB))
    assert info.vocab_size == VOCAB and info.training_docs == len(_records())
    assert info.special_ids == {"bos": 0, "eos": 1, "pad": 2, "im_start": 3, "im_end": 4}
    print(f"trained on {info.training_chars:,} chars in {info.seconds:.3f} s")
    return out


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading a local tokenizer")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _corpus_texts(docs: Path) -> list[str]:
    return [t for p in shard_paths(docs) for t in read_shard(p).column("text").to_pylist()]


def test_round_trip_and_specials_never_come_from_text(trained: Path, docs: Path) -> None:
    tok = load_tokenizer(trained)
    raw = tok.tokenizer
    for text in HARD_TEXTS + _corpus_texts(docs):
        ids = raw.encode(text, add_special_tokens=False).ids
        assert raw.decode(ids, skip_special_tokens=False) == text
        assert min(ids, default=len(SPECIALS)) >= len(SPECIALS), text  # no special id
        assert max(ids, default=0) < tok.vocab_size
    # byte-level: nothing is unknown, and the corpus compresses (merges were learned)
    corpus = " ".join(_corpus_texts(docs))
    assert len(raw.encode(corpus, add_special_tokens=False).ids) < len(corpus.encode()) / 2.5
    # each special token is one id; spelled out in a text it is matched as that one token
    for token, i in SPECIALS.items():
        assert raw.token_to_id(token) == i
        assert raw.encode(f"a{token}b", add_special_tokens=False).ids[1] == i
    # ... unless the encoder is told to treat special tokens as text (raw web documents)
    raw.encode_special_tokens = True
    try:
        ids = raw.encode("a<|end_of_text|>b", add_special_tokens=False).ids
        assert len(ids) > 3 and min(ids) >= len(SPECIALS)
    finally:
        raw.encode_special_tokens = False


def test_round_trip_on_real_web_text(trained: Path) -> None:
    """The 380 human-checked WCXB main texts (real pages, none seen in training)."""
    gold = sorted((WCXB_DEV_DIR / "gold").glob("*.json"))
    if not gold:
        pytest.skip(f"shared WCXB data not found at {WCXB_DEV_DIR}")
    texts = [json.loads(p.read_text())["main_content"] for p in gold]
    raw = load_tokenizer(trained).tokenizer
    encodings = raw.encode_batch_fast(texts, add_special_tokens=False)
    for text, enc in zip(texts, encodings, strict=True):
        assert min(enc.ids, default=len(SPECIALS)) >= len(SPECIALS)
        assert raw.decode(enc.ids, skip_special_tokens=False) == text


def test_loaded_tokenizer_fields(trained: Path) -> None:
    tok = load_tokenizer(trained)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.end_of_turn_id) == (0, 1, 2, 4)
    assert tok.vocab_size == VOCAB and tok.token_dtype == np.uint16 and not tok.add_bos
    assert tok.special_ids == SPECIALS
    meta = json.loads((trained / METADATA_FILE).read_text())
    assert meta["vocab_size"] == VOCAB and meta["config"]["vocab_size"] == VOCAB
    assert meta["library_version"] and meta["training"]["docs"] == len(_records())
    assert all(len(s["sha256"]) == 64 for s in meta["training"]["shards"])
    assert len(meta["training"]["shards"]) == 2
    # written for transformers 4.x as well as 5.x (5.x alone would write a class 4.x lacks)
    hf_config = json.loads((trained / "tokenizer_config.json").read_text())
    assert hf_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert hf_config["additional_special_tokens"] == ["<|im_start|>", "<|im_end|>"]
    assert "extra_special_tokens" not in hf_config and "<|im_end|>" in hf_config["chat_template"]


def test_token_dtype_choice() -> None:
    assert token_dtype_for(8192) == np.uint16
    assert token_dtype_for(65536) == np.uint16  # ids 0..65535 fit
    assert token_dtype_for(65537) == np.uint32
    assert token_dtype_for(151_936) == np.uint32


def test_auto_tokenizer_offline_chat_template(trained: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(trained), local_files_only=True)
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (0, 1, 2)
    assert {"<|im_start|>", "<|im_end|>"} <= set(hf.all_special_tokens)
    rendered = hf.apply_chat_template(CHAT, tokenize=False)
    assert rendered == ("<|im_start|>system\nYou are terse.<|im_end|>\n"
                        "<|im_start|>user\nName a river.<|im_end|>\n"
                        "<|im_start|>assistant\nThe Alder Brook.<|im_end|>\n")
    prompt = hf.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nName a river.<|im_end|>\n<|im_start|>assistant\n")
    ids = hf.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]
    assert ids[0] == 3 and ids.count(3) == 3 and ids.count(4) == 3
    assert hf.decode(ids) == rendered
    # the assistant's turn ends with <|im_end|> (then the newline)
    assert ids[-2:] == [4, *hf.encode("\n", add_special_tokens=False)]
    # the HF tokenizer and the raw fast path agree, and add no special tokens to documents
    text = HARD_TEXTS[4]
    assert hf(text)["input_ids"] == load_tokenizer(trained).tokenizer.encode(text).ids
    assert hf.decode(hf(text)["input_ids"]) == text


def test_training_is_deterministic(trained: Path, docs: Path, tmp_path: Path) -> None:
    again = train_tokenizer([docs], tmp_path / "again", TokenizerConfig(vocab_size=VOCAB))
    first = (trained / "tokenizer.json").read_bytes()
    assert (again.path / "tokenizer.json").read_bytes() == first
    # shard files given one by one are the same input as their stage folder
    shards = training_shards([docs])
    train_tokenizer(shards, tmp_path / "files", TokenizerConfig(vocab_size=VOCAB))
    assert (tmp_path / "files" / "tokenizer.json").read_bytes() == first
    for name in ("tokenizer_config.json", METADATA_FILE):
        assert (again.path / name).read_bytes() == (trained / name).read_bytes()
    # retraining into an existing tokenizer folder replaces it
    train_tokenizer([docs], again.path, TokenizerConfig(vocab_size=600))
    assert load_tokenizer(again.path).vocab_size == 600


def test_caps_on_training_text(docs: Path, tmp_path: Path) -> None:
    shards = training_shards([docs])
    stream = TextStream(shards, max_docs=7, batch=3)
    batches = list(stream)
    assert sum(map(len, batches)) == 7 == stream.docs and [len(b) for b in batches] == [3, 3, 1]
    stream = TextStream(shards, max_chars=1234)
    assert sum(len(t) for b in stream for t in b) == 1234 == stream.chars
    assert len(stream.used) == 1  # the second shard was never opened
    info = train_tokenizer([docs], tmp_path / "t", TokenizerConfig(vocab_size=400, max_docs=5))
    assert info.training_docs == 5 and len(info.shards) == 1


def test_add_bos(docs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    from transformers import AutoTokenizer

    out = tmp_path / "bos"
    train_tokenizer([docs], out, TokenizerConfig(vocab_size=400, add_bos=True))
    tok = load_tokenizer(out)
    assert tok.add_bos and tok.tokenizer.encode("hi").ids[0] == 0
    assert tok.tokenizer.encode("hi", add_special_tokens=False).ids[0] != 0
    hf = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert hf("hi")["input_ids"][0] == 0
    rendered = hf.apply_chat_template(CHAT[1:2], tokenize=False)
    assert rendered == "<|begin_of_text|><|im_start|>user\nName a river.<|im_end|>\n"
    ids = hf.apply_chat_template(CHAT[1:2], tokenize=True, return_dict=True)["input_ids"]
    assert ids[:2] == [0, 3] and ids.count(0) == 1


def test_load_folder_saved_by_transformers(trained: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    from transformers import AutoTokenizer

    plain = tmp_path / "plain"
    AutoTokenizer.from_pretrained(str(trained), local_files_only=True).save_pretrained(plain)
    assert not (plain / METADATA_FILE).exists()
    tok = load_tokenizer(plain)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2)
    assert tok.metadata is None and tok.end_of_turn_id is None and not tok.add_bos
    assert tok.vocab_size == VOCAB and tok.token_dtype == np.uint16


def test_load_foreign_folder_old_style_special_tokens(tmp_path: Path) -> None:
    """A GPT-2 / Llama style folder: tokens as {"content": ...} dicts in special_tokens_map.json,
    a post-processor that puts BOS first, ids beyond 65535."""
    from tokenizers import Tokenizer, models, processors

    vocab = {"<s>": 0, "</s>": 1, "hello": 2, "world": 70_000}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="hello"))
    tok.add_special_tokens(["<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[
        ("<s>", 0)])
    folder = tmp_path / "foreign"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 2048}))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>"}))
    loaded = load_tokenizer(folder)
    assert (loaded.bos_id, loaded.eos_id, loaded.pad_id) == (0, 1, None)
    assert loaded.add_bos and loaded.vocab_size == 70_001 and loaded.token_dtype == np.uint32


def test_folder_without_tokenizer_json(tmp_path: Path) -> None:
    folder = tmp_path / "empty_tok"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"empty_tok has no tokenizer\.json"):
        load_tokenizer(folder)


def test_bad_inputs_and_config(docs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="distinct"):
        load_config(TokenizerConfig, overrides=("pad_token=<|end_of_text|>",))
    with pytest.raises(ConfigError, match="vocab_size"):
        load_config(TokenizerConfig, overrides=("vocab_size=200",))
    with pytest.raises(FileNotFoundError, match=r"_manifest\.json"):
        train_tokenizer([tmp_path], tmp_path / "t", TokenizerConfig(vocab_size=400))
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        train_tokenizer([docs], precious, TokenizerConfig(vocab_size=400))
    assert (precious / "notes.txt").read_text() == "keep me"


def test_cli_train(docs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("tokenizer:\n  vocab_size: 500\n  min_frequency: 3\n")
    out = tmp_path / "cli_tok"
    proc = run_cli("curate", "tokenizer", "train", "--input", str(docs), "--output", str(out),
                   "--config", str(recipe), "--set", "max_docs=40", "--quiet", check=True)
    assert "vocab    500 tokens" in proc.stdout
    assert "bos 0  eos 1  pad 2  im_start 3  im_end 4" in proc.stdout
    assert "on 40 documents" in proc.stdout
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["config"]["min_frequency"] == 3 and meta["training"]["docs"] == 40
    bad = run_cli("curate", "tokenizer", "train", "--input", str(docs), "--output",
                  str(tmp_path / "x"), "--set", "vocab_sise=500")
    assert bad.returncode != 0 and "vocab_sise" in bad.stderr
    shutil.rmtree(out)
