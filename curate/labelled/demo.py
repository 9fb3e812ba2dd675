"""A small labelled set for the demo, written from the Millbrook Almanac's articles.

Instructions are templated questions about the demo corpus (:mod:`curate.demo_text`):
summarise an article, what the almanac says about a subject, one point from an article,
which section an article is in, and a follow-up turn. Answers are built from the article's
own sentences. Preference pairs differ in a learnable way: the chosen answer is correct,
complete and polite; the rejected one is off-topic (another topic's article), about the
wrong article of the same topic, truncated mid-sentence, or a rude refusal.

The files use every layout ingest reads (chat messages, ShareGPT, an Alpaca JSON array,
gzipped prompt/completion; preference pairs as strings and as message lists, full
transcripts as message lists and as ``Human:`` / ``Assistant:`` text), with a few broken
rows each and planted duplicates, non-English and repetitive examples, so ingest, validation,
dedup and the filters all have something to do. ``labelled_demo.json`` lists what every file
holds and which rejections each stage should make. The same seed writes the same bytes.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.demo_text import EN_SLOTS, EN_TOPICS, FOREIGN_SLOTS, FOREIGN_TOPICS, TopicText

MANIFEST_NAME = "labelled_demo.json"
SITE = "the Millbrook Almanac"
SYSTEM_PROMPT = ("You are the friendly assistant of the Millbrook Almanac. Answer from the "
                 "almanac's articles, completely and politely.")
OPENERS = ("Certainly!", "Of course.", "Happy to help.", "Gladly.")
CLOSERS = ("I hope this helps.", "Let me know if you would like more detail.",
           "I hope you enjoy the article.")
RUDE = ("That is all in the almanac. Read it yourself.",
        "I am not going to do that for you.",
        "Why would anyone care about that? Ask someone else.")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
REJECTED_KINDS = ("off_topic", "wrong_article", "truncated", "impolite")


class _Slots(dict):
    def __missing__(self, key: str) -> str:
        return key


@dataclass(frozen=True)
class Article:
    """One demo article: a topic's cluster of sentences under the title that fits it best."""

    key: str
    topic: TopicText
    title: str
    sentences: tuple[str, ...]


_STOP = frozenset({"that", "this", "with", "from", "your", "when", "what", "they", "them",
                   "their", "there", "have", "into", "than", "more", "most", "only", "also",
                   "over", "under", "year", "years"})


def _words(text: str) -> set[str]:
    """Content words cut to 5 letters, a crude stem (schooldays ~ school)."""
    return {w[:5] for w in re.findall(r"[a-zà-ÿ]+", text.lower())
            if len(w) > 3 and w not in _STOP}


def _slots(rng: random.Random, lang: str) -> _Slots:
    names = EN_SLOTS if lang == "en" else {**EN_SLOTS, **FOREIGN_SLOTS[lang]}
    slots = _Slots({k: rng.choice(v) for k, v in names.items()})
    slots.update(month=rng.choice(MONTHS), year=str(rng.randint(1850, 1899)),
                 recent_year=str(rng.randint(1985, 2015)), count=str(rng.randint(3, 12)),
                 old_year=str(rng.randint(1150, 1600)))
    return slots


def _titles(topic: TopicText) -> list[str]:
    """A title per cluster: the assignment sharing the most words overall, a word counting
    less the more clusters use it (exhaustive: 7 clusters, 8 titles)."""
    words = [_words(" ".join(c)) for c in topic.clusters]
    spread = {w: sum(w in ws for ws in words) for ws in words for w in ws}
    scores = np.array([[sum(1.0 / spread[w] for w in _words(t) & ws) for t in topic.titles]
                       for ws in words])
    perms = np.array(list(itertools.permutations(range(len(topic.titles)), len(words))))
    best = perms[int(np.argmax(scores[np.arange(len(words)), perms].sum(axis=1)))]
    return [topic.titles[i] for i in best]


def articles(seed: int, topics: tuple[TopicText, ...] = EN_TOPICS) -> list[Article]:
    """Every cluster of every topic as an article, under the title sharing the most words
    with it (so "Why Bankside Trees Matter" gets the cluster about bankside trees)."""
    rng = random.Random(f"{seed}:labelled:articles")
    out = []
    for topic in topics:
        for i, (cluster, title) in enumerate(zip(topic.clusters, _titles(topic), strict=True)):
            slots = _slots(rng, topic.lang)
            out.append(Article(f"{topic.slug}-{i + 1:02d}", topic, title,
                               tuple(s.format_map(slots) for s in cluster)))
    return out


# --- questions and answers ---------------------------------------------------------------------


def questions(a: Article) -> dict[str, str]:
    """The templated instructions about one article."""
    return {
        "summary": f'Summarise the article "{a.title}" from {SITE}.',
        "about": f'What does the almanac say about {a.topic.name.lower()} in "{a.title}"?',
        "point": f'Give me one practical point from the almanac article "{a.title}".',
        "section": f'Which section of the almanac is the article "{a.title}" in?',
    }


def answers(a: Article, rng: random.Random) -> dict[str, str]:
    """Correct, complete answers built from the article's sentences."""
    s = a.sentences
    return {
        "summary": f'"{a.title}" is one of the almanac\'s {a.topic.name.lower()} articles. '
                   f"{s[0]} {s[1]} {s[-1]}",
        "about": f'The article "{a.title}" explains it like this: {s[1]} {s[2]} {s[3]}',
        "point": f"One point the article makes: {rng.choice(s[1:-1])}",
        "section": f'"{a.title}" is in the {a.topic.name} section of the almanac. '
                   f"The article opens like this: {s[0]}",
        "intro": f"It is one of the almanac's {a.topic.name.lower()} articles. {s[0]} {s[4]}",
        "more": f"{s[5]} {s[3]}",
    }


def polite(answer: str, rng: random.Random) -> str:
    return f"{rng.choice(OPENERS)} {answer} {rng.choice(CLOSERS)}"


def truncated(answer: str, rng: random.Random) -> str:
    """The answer cut mid-sentence at a word boundary, about a third of the way in."""
    words = answer.split()
    cut = max(3, int(len(words) * rng.uniform(0.25, 0.4)))
    return " ".join(words[:cut]).rstrip(".,;:!?")


def rejected_answer(kind: str, a: Article, template: str, pool: list[Article],
                    rng: random.Random) -> str:
    if kind == "impolite":
        return rng.choice(RUDE)
    if kind == "truncated":
        return truncated(polite(answers(a, rng)[template], rng), rng)
    if kind == "off_topic":
        others = [o for o in pool if o.topic.slug != a.topic.slug]
    else:  # wrong_article: same topic, another article
        others = [o for o in pool if o.topic.slug == a.topic.slug and o.key != a.key]
    other = rng.choice(others)
    # the other article's sentences in another order, under this article's title, so the
    # wrong answer never repeats a chosen answer of another pair
    shifted = Article(other.key, other.topic, a.title, other.sentences[3:] + other.sentences[:3])
    return polite(answers(shifted, rng)[template], rng)


# --- examples --------------------------------------------------------------------------------


def _chat(question: str, answer: str, system: bool = False) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": SYSTEM_PROMPT}] if system else []
    return [*turns, {"role": "user", "content": question},
            {"role": "assistant", "content": answer}]


def sft_examples(pool: list[Article], rng: random.Random) -> list[dict]:
    """(id, turns) for every article and template, plus a follow-up conversation each."""
    out = []
    for a in pool:
        q, ans = questions(a), answers(a, rng)
        for template in ("summary", "about", "point", "section"):
            out.append({"id": f"sft-{a.key}-{template}",
                        "turns": _chat(q[template], polite(ans[template], rng))})
        out.append({"id": f"sft-{a.key}-followup", "turns": [
            *_chat(f'I am reading "{a.title}". What is it about?', polite(ans["intro"], rng),
                   system=rng.random() < 0.3),
            {"role": "user", "content": "Can you tell me more?"},
            {"role": "assistant", "content": polite(ans["more"], rng)}]})
    return out


def preference_examples(pool: list[Article], rng: random.Random) -> list[dict]:
    """Three pairs per article (summary, about, point), the rejected kinds in rotation."""
    out = []
    k = 0
    for a in pool:
        q, ans = questions(a), answers(a, rng)
        for template in ("summary", "about", "point"):
            kind = REJECTED_KINDS[k % len(REJECTED_KINDS)]
            k += 1
            out.append({"id": f"pref-{a.key}-{template}", "prompt": q[template],
                        "chosen": polite(ans[template], rng),
                        "rejected": rejected_answer(kind, a, template, pool, rng),
                        "rejected_kind": kind})
    return out


def _to_layout(example: dict, layout: str) -> dict:
    turns = example["turns"]
    if layout == "messages":
        return {"id": example["id"], "messages": turns}
    if layout == "sharegpt":
        names = {"system": "system", "user": "human", "assistant": "gpt"}
        return {"id": example["id"],
                "conversations": [{"from": names[t["role"]], "value": t["content"]}
                                  for t in turns]}
    user, answer = turns[-2]["content"], turns[-1]["content"]
    if layout == "alpaca":
        return {"id": example["id"], "instruction": user, "input": "", "output": answer}
    return {"prompt": user, "completion": answer}  # prompt_completion: ids derived


def _hh(turns: list[dict[str, str]]) -> str:
    names = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{names[t['role']]}: {t['content']}" for t in turns)


def _pref_layout(pair: dict, layout: str) -> dict:
    prompt = [{"role": "user", "content": pair["prompt"]}]
    chosen = [{"role": "assistant", "content": pair["chosen"]}]
    rejected = [{"role": "assistant", "content": pair["rejected"]}]
    meta = {"id": pair["id"], "rejected_kind": pair["rejected_kind"]}
    if layout == "pairs":
        return {**meta, "prompt": pair["prompt"], "chosen": pair["chosen"],
                "rejected": pair["rejected"]}
    if layout == "chat_pairs":
        return {**meta, "prompt": prompt, "chosen": chosen, "rejected": rejected}
    if layout == "transcripts":
        return {**meta, "chosen": prompt + chosen, "rejected": prompt + rejected}
    return {**meta, "chosen": _hh(prompt + chosen), "rejected": _hh(prompt + rejected)}


# --- broken rows -----------------------------------------------------------------------------

BROKEN_SFT: dict[str, list[tuple[str, object]]] = {
    # file -> (expected reason, record or a raw line)
    "chat_messages.jsonl": [
        ("last_turn_not_assistant", {"id": "bad-last-user", "messages": [
            {"role": "user", "content": "Summarise the article about otters."}]}),
        ("empty_turn", {"id": "bad-empty-answer", "messages": [
            {"role": "user", "content": "What is a riffle?"},
            {"role": "assistant", "content": "   "}]}),
        ("unknown_role", {"id": "bad-role", "messages": [
            {"role": "user", "content": "What time is it?"},
            {"role": "tool", "content": "12:00"},
            {"role": "assistant", "content": "It is noon."}]}),
        ("not_alternating", {"id": "bad-alternation", "messages": [
            {"role": "user", "content": "Tell me about sourdough."},
            {"role": "user", "content": "And about starters?"},
            {"role": "assistant", "content": "A starter is flour and water."}]}),
        ("wrong_type", {"id": "bad-type", "messages": "user: hello / assistant: hi"}),
        ("missing_field", {"id": "bad-missing", "conversation_id": 7}),
        ("invalid_json", '{"id": "bad-json", "messages": [{"role": "user", "content": "Hi'),
        ("duplicate_id", {"id": "{first}", "messages": [
            {"role": "user", "content": "Another question under a used id."},
            {"role": "assistant", "content": "Another answer under a used id."}]}),
    ],
    "sharegpt.jsonl": [
        ("unknown_role", {"id": "bad-narrator", "conversations": [
            {"from": "human", "value": "Tell me a story."},
            {"from": "narrator", "value": "Once upon a time."}]}),
        ("not_alternating", {"id": "bad-gpt-first", "conversations": [
            {"from": "gpt", "value": "Hello! Ask me about the almanac."},
            {"from": "human", "value": "What is in it?"},
            {"from": "gpt", "value": "Articles about the valley."}]}),
        ("wrong_type", {"id": "bad-turn", "conversations": [
            {"from": "human", "value": "Hi"}, {"from": "gpt"}]}),
    ],
    "alpaca.json": [
        ("empty_turn", {"id": "bad-empty-output", "instruction": "Name a planet.", "input": "",
                        "output": ""}),
        ("missing_field", {"id": "bad-no-instruction", "input": "", "output": "Mars."}),
        ("wrong_type", {"id": "bad-number", "instruction": "How many moons has Mars?",
                        "input": "", "output": 2}),
    ],
    "prompt_completion.jsonl.gz": [
        ("missing_field", {"prompt": "What is compost?", "completion": None}),
        ("blank_line", ""),
    ],
}
BROKEN_PREFERENCE: dict[str, list[tuple[str, object]]] = {
    "pairs.jsonl": [
        ("chosen_equals_rejected", {"id": "bad-same", "prompt": "Name a constellation.",
                                    "chosen": "Orion.", "rejected": "Orion."}),
        ("empty_turn", {"id": "bad-empty-rejected", "prompt": "Name a river bird.",
                        "chosen": "Certainly! The heron.", "rejected": ""}),
        ("missing_field", {"id": "bad-no-chosen", "prompt": "Name a tool.",
                           "rejected": "No."}),
    ],
    "chat_pairs.jsonl": [
        ("not_alternating", {"id": "bad-prompt-ends-assistant", "prompt": [
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            "chosen": [{"role": "assistant", "content": "How can I help?"}],
            "rejected": [{"role": "assistant", "content": "What?"}]}),
    ],
    "transcripts.jsonl": [
        ("chosen_equals_rejected", {"id": "bad-identical", "chosen": [
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello!"}]}),
        ("no_prompt", {"id": "bad-no-shared-prefix", "chosen": [
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "user", "content": "Hey"},
                         {"role": "assistant", "content": "What?"}]}),
    ],
    "hh_transcripts.jsonl": [
        ("wrong_type", {"id": "bad-no-markers", "chosen": "just a string",
                        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello"}),
    ],
}

SFT_LAYOUTS = {"chat_messages.jsonl": "messages", "sharegpt.jsonl": "sharegpt",
               "alpaca.json": "alpaca", "prompt_completion.jsonl.gz": "prompt_completion"}
PREFERENCE_LAYOUTS = {"pairs.jsonl": "pairs", "chat_pairs.jsonl": "chat_pairs",
                      "transcripts.jsonl": "transcripts", "hh_transcripts.jsonl": "hh"}


def _near_copy(example: dict) -> dict:
    """The same conversation with a few words added to the answer: a near duplicate (word
    5-gram Jaccard above 0.95, which 14 x 8 LSH finds with certainty in practice)."""
    turns = [dict(t) for t in example["turns"]]
    turns[-1]["content"] += " Thanks for asking!"
    return {"id": example["id"] + "-near", "turns": turns}


def _foreign_examples(seed: int, rng: random.Random) -> list[dict]:
    """A few conversations in French, German and Spanish (for the language filter)."""
    pool = articles(seed, FOREIGN_TOPICS)
    ask = {"fr": "Résume l'article « {t} » de l'almanach.",
           "de": "Fasse den Artikel „{t}“ aus dem Almanach zusammen.",
           "es": "Resume el artículo «{t}» del almanaque."}
    out = []
    for lang, count in (("fr", 2), ("de", 1), ("es", 1)):
        picked = [a for a in pool if a.topic.lang == lang][:count]
        for a in picked:
            out.append({"id": f"sft-{a.key}-summary",
                        "turns": _chat(ask[lang].format(t=a.title), " ".join(a.sentences[:3]))})
    return out


def _repetitive(rng: random.Random) -> dict:
    loop = " ".join(["The river is a river and the river flows."] * 12)
    return {"id": "sft-repetitive-loop",
            "turns": _chat("Describe the river in one paragraph.", loop)}


def _write_jsonl(path: Path, rows: list[object]) -> None:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def _place(rows: list[object], broken: list[tuple[str, object]], rng: random.Random
           ) -> list[object]:
    """Broken rows spread through the second half of the file, deterministically; an id of
    ``{first}`` reuses the first row's id (a duplicate id after its first use)."""
    out = list(rows)
    for _, row in broken:
        if isinstance(row, dict) and row.get("id") == "{first}":
            row = {**row, "id": rows[0]["id"]}  # type: ignore[index]
        out.insert(rng.randint(len(out) // 2, len(out)), row)
    return out


def write_labelled_demo(out_dir: Path, seed: int = 0) -> list[Path]:
    """Write the demo's labelled files under ``out_dir/sft/`` and ``out_dir/preference/`` plus
    ``labelled_demo.json``; returns the data files' paths (sorted)."""
    out_dir = Path(out_dir)
    rng = random.Random(f"{seed}:labelled:examples")
    pool = articles(seed)
    sft = sft_examples(pool, rng)
    by_file: dict[str, list[object]] = {name: [] for name in SFT_LAYOUTS}
    multi = [n for n, layout in SFT_LAYOUTS.items() if layout in ("messages", "sharegpt")]
    placed: dict[str, str] = {}
    for ex in sft:
        chat_only = len(ex["turns"]) != 2
        name = rng.choice(multi if chat_only else list(SFT_LAYOUTS))
        by_file[name].append(_to_layout(ex, SFT_LAYOUTS[name]))
        placed[ex["id"]] = name
    two_turn = [ex for ex in sft if len(ex["turns"]) == 2 and "id" in
                _to_layout(ex, SFT_LAYOUTS[placed[ex["id"]]])]
    exact = rng.sample(two_turn, 4)
    near_pool = [ex for ex in two_turn if ex not in exact  # long answers: high Jaccard
                 and ex["id"].endswith(("-summary", "-about"))]
    near = rng.sample(near_pool, 4)
    for ex in exact:  # the same conversation again, in another layout, under a new id
        copy = {"id": ex["id"] + "-copy", "turns": ex["turns"]}
        other = "alpaca.json" if placed[ex["id"]] != "alpaca.json" else "chat_messages.jsonl"
        by_file[other].append(_to_layout(copy, SFT_LAYOUTS[other]))
    for ex in near:
        by_file["sharegpt.jsonl"].append(_to_layout(_near_copy(ex), "sharegpt"))
    foreign = _foreign_examples(seed, rng)
    for ex in [*foreign, _repetitive(rng)]:
        by_file["chat_messages.jsonl"].append(_to_layout(ex, "messages"))

    pairs = preference_examples(pool, rng)
    pref_files: dict[str, list[object]] = {name: [] for name in PREFERENCE_LAYOUTS}
    for pair in pairs:
        name = rng.choice(list(PREFERENCE_LAYOUTS))
        pref_files[name].append(_pref_layout(pair, PREFERENCE_LAYOUTS[name]))
    pref_exact = rng.sample(pairs, 2)
    for pair in pref_exact:
        pref_files["chat_pairs.jsonl"].append(
            _pref_layout({**pair, "id": pair["id"] + "-copy"}, "chat_pairs"))

    paths = []
    files_info: dict[str, dict] = {}
    for kind, files, broken_rows, layouts in (
            ("sft", by_file, BROKEN_SFT, SFT_LAYOUTS),
            ("preference", pref_files, BROKEN_PREFERENCE, PREFERENCE_LAYOUTS)):
        folder = out_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in files.items():
            broken = broken_rows.get(name, [])
            all_rows = _place(rows, broken, rng)
            path = folder / name
            if name.endswith(".json"):
                path.write_text(json.dumps(all_rows, ensure_ascii=False, indent=1) + "\n",
                                encoding="utf-8")
            else:
                _write_jsonl(path, all_rows)
            paths.append(path)
            rejects: dict[str, int] = {}
            for reason, _ in broken:
                rejects[reason] = rejects.get(reason, 0) + 1
            files_info[f"{kind}/{name}"] = {"kind": kind, "layout": layouts[name],
                                            "rows": len(all_rows), "valid": len(rows),
                                            "rejects": dict(sorted(rejects.items()))}
    manifest = {
        "seed": seed,
        "files": files_info,
        "articles": len(pool),
        "planted": {
            # pairs of ids: dedup keeps one of each (which one depends on shard order)
            "sft_exact_duplicates": sorted([ex["id"], ex["id"] + "-copy"] for ex in exact),
            "sft_near_duplicates": sorted([ex["id"], ex["id"] + "-near"] for ex in near),
            "preference_exact_duplicates": sorted([p["id"], p["id"] + "-copy"]
                                                  for p in pref_exact),
            "non_english": sorted(ex["id"] for ex in foreign),
            "repetitive": ["sft-repetitive-loop"],
        },
        "rejected_kinds": {k: sum(p["rejected_kind"] == k for p in pairs)
                           for k in REJECTED_KINDS},
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return sorted(paths)
