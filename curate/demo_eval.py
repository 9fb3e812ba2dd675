"""A small evaluation set for the demo, with a planted overlap to show decontamination at work.

Eighteen short question/answer items about the demo site's topics are written for this
project and share no long passage with the site. Two more are reading-comprehension items
whose ``passage`` is a paragraph copied from a crawled article of the generated site (read
from its ``site_manifest.json``): the situation decontamination exists for, an evaluation
item that also sits in the training crawl. The paragraph is chosen so that its 13-word
n-grams occur in no other page, and the article has no duplicates, so exactly that page
should be caught, whatever the site's seed.

``write_demo_eval`` writes ``demo_eval.jsonl`` (the items, the same bytes for the same site)
and ``demo_eval.json`` (which items were planted, from which page).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.demo_site import word_ngrams
from curate.demo_text import EN_TOPICS

EVAL_NAME = "demo_eval"
ITEMS_FILE = f"{EVAL_NAME}.jsonl"
INFO_FILE = f"{EVAL_NAME}.json"
PLANTED = 2
OVERLAP_N = 13
"""Words of the n-grams that must be unique to the planted paragraph (the index's default)."""

QA: tuple[tuple[str, str, str], ...] = (
    ("river-ecology", "Which insect larvae build portable cases out of sand grains or twigs?",
     "Caddisfly larvae."),
    ("river-ecology", "Why do riffles hold many insect larvae?", "They are rich in oxygen."),
    ("river-ecology", "What made otters disappear from many rivers in the last century?",
     "Pesticides that built up in the fish they ate."),
    ("bread-baking", "What three ingredients, besides time, does a basic sourdough loaf need?",
     "Flour, water and salt."),
    ("bread-baking", "What is a sourdough starter?",
     "A mixture of flour and water in which wild yeasts and bacteria live."),
    ("bread-baking", "Name one common reason a loaf comes out flat.",
     "The dough was over-proofed or the starter was weak."),
    ("bicycle-repair", "What should you check first when a tyre keeps going flat?",
     "The inside of the tyre, for a thorn or shard still stuck in it."),
    ("bicycle-repair", "Why should a bicycle chain be cleaned before it is oiled?",
     "Oil on a dirty chain binds the grit into a grinding paste."),
    ("bicycle-repair", "What tells you the right pressure for a tyre?",
     "The range printed on the tyre's sidewall."),
    ("astronomy", "Which star stays almost still while the others circle it in the north?",
     "Polaris, the Pole Star."),
    ("astronomy", "Why are binoculars often better than a cheap telescope for a beginner?",
     "They are easy to aim and show a wide, bright field."),
    ("astronomy", "How long do your eyes need to adapt fully to the dark?",
     "About twenty to thirty minutes."),
    ("local-history", "Where can you find records of baptisms, marriages and burials?",
     "In the parish registers."),
    ("local-history", "What did a water mill use to turn its millstones?",
     "A water wheel driven by the mill race."),
    ("local-history", "What can old field names tell a historian?",
     "How the land was used and who once owned it."),
    ("gardening", "What two kinds of material should go into a compost heap?",
     "Green, nitrogen-rich material and brown, carbon-rich material."),
    ("gardening", "How can you protect seedlings from slugs without poison?",
     "Collect them at night, or use barriers and traps."),
    ("gardening", "Why leave some flowers unpicked in a vegetable garden?",
     "They feed bees and other pollinators."),
)


@dataclass(frozen=True)
class DemoEval:
    """What :func:`write_demo_eval` wrote."""

    path: Path
    """The items (JSONL)."""
    info: dict[str, Any]
    """``items``, ``planted`` (id, url, path, title of each planted item's source page)."""


def _topic_name(path: str) -> str:
    for topic in EN_TOPICS:
        if path.startswith(f"/articles/{topic.slug}-"):
            return topic.name
    return "the almanac"


def _sentences(paragraph: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", paragraph) if s]


def _unique_passage(page: dict, others: list[set]) -> str | None:
    """The first two consecutive sentences (else one sentence) of 13+ words none of whose
    13-grams occurs in another page. Articles reuse sentence clusters, so whole paragraphs
    are shared; sentences with a town, a river or a name filled in are not."""
    for width in (2, 1):
        for paragraph in page["text"].split("\n\n"):
            sentences = _sentences(paragraph)
            for i in range(len(sentences) - width + 1):
                passage = " ".join(sentences[i:i + width])
                grams = word_ngrams(passage, OVERLAP_N)
                if grams and not any(grams & other for other in others):
                    return passage
    return None


def planted_passages(site: dict, n: int = PLANTED) -> list[tuple[dict, str]]:
    """(page, paragraph) for the first ``n`` crawlable English articles without duplicates
    that have a paragraph found in no other page."""
    pages = site["pages"]
    copied = {p["duplicate_of"] for p in pages if p["duplicate_of"]}
    shingles = [word_ngrams(p["text"], OVERLAP_N) for p in pages]
    out: list[tuple[dict, str]] = []
    for i, page in enumerate(pages):
        if (page["kind"] != "article" or page["lang"] != "en" or not page["allowed"]
                or page["path"] in copied):
            continue
        paragraph = _unique_passage(page, shingles[:i] + shingles[i + 1:])
        if paragraph is not None:
            out.append((page, paragraph))
        if len(out) == n:
            break
    return out


def demo_items(site: dict) -> tuple[list[dict], list[dict]]:
    """(items, planted) for a site manifest; deterministic."""
    items = [{"id": f"qa-{i + 1:03d}", "topic": topic, "question": q, "answer": a}
             for i, (topic, q, a) in enumerate(QA)]
    planted = []
    for page, paragraph in planted_passages(site):
        item_id = f"qa-{len(items) + 1:03d}"
        items.append({"id": item_id, "topic": page["path"].split("/")[-1].rsplit("-", 1)[0],
                      "passage": paragraph,
                      "question": "Which subject of the almanac does this passage belong to?",
                      "answer": _topic_name(page["path"])})
        planted.append({"id": item_id, "key": f"{EVAL_NAME}:{item_id}", "url": page["url"],
                        "path": page["path"], "title": page["title"]})
    return items, planted


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomic write, skipped when the file already holds these bytes (its hash is an input
    of the index, so rewriting the same bytes must not look like a change)."""
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_demo_eval(out_dir: Path, site_manifest: Path) -> DemoEval:
    """Write the demo evaluation set for the site described by ``site_manifest``."""
    site = json.loads(Path(site_manifest).read_text(encoding="utf-8"))
    items, planted = demo_items(site)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n"
                    for item in items)
    _write_if_changed(out_dir / ITEMS_FILE, lines.encode("utf-8"))
    info = {"name": EVAL_NAME, "items": len(items), "planted": planted}
    _write_if_changed(out_dir / INFO_FILE, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return DemoEval(out_dir / ITEMS_FILE, info)
