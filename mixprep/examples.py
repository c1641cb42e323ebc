"""Example sources for the mixtures in `configs/`, generated from a seed.

`python -m mixprep example-data data/` writes small synthetic corpora in each
record format mixprep reads: short stories and technical notes (pretrain),
single- and multi-turn chats (SFT), preference pairs (DPO) and prompts (RL).
The text is made up here from word lists, so it carries no licence questions.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

NAMES = ["Mia", "Leo", "Ava", "Sam", "Nora", "Ben", "Lily", "Max", "Ruby", "Tom", "Zoe", "Finn"]
ANIMALS = ["cat", "dog", "bird", "fox", "rabbit", "turtle", "owl", "frog", "bear", "duck"]
PLACES = ["park", "garden", "forest", "beach", "kitchen", "school", "river", "hill", "library", "farm"]
THINGS = ["ball", "kite", "book", "hat", "box", "cake", "boat", "shell", "lamp", "drum"]
FEELINGS = ["happy", "sad", "brave", "curious", "tired", "excited", "scared", "proud", "calm", "silly"]
VERBS = ["found", "lost", "painted", "shared", "carried", "fixed", "hid", "built", "threw", "opened"]
TOPICS = ["caching", "indexing", "sharding", "hashing", "batching", "logging", "retries", "compression", "parsing", "sorting"]
TECH = ["a queue", "the scheduler", "each worker", "the index", "a buffer", "the driver", "a shard", "the manifest"]
EFFECTS = ["cuts latency", "bounds memory", "keeps output deterministic", "avoids a full copy", "saves disk", "halves the work"]

STORY_SENTENCES: list[Callable[[random.Random], str]] = [
    lambda r: f"Once upon a time, {r.choice(NAMES)} had a {r.choice(FEELINGS)} {r.choice(ANIMALS)}.",
    lambda r: f"One day they went to the {r.choice(PLACES)} with a red {r.choice(THINGS)}.",
    lambda r: f"The {r.choice(ANIMALS)} {r.choice(VERBS)} the {r.choice(THINGS)} near the {r.choice(PLACES)}.",
    lambda r: f"\"Look!\" said {r.choice(NAMES)}. \"It is so {r.choice(FEELINGS)}!\"",
    lambda r: f"{r.choice(NAMES)} felt {r.choice(FEELINGS)} and smiled.",
    lambda r: f"They played until the sun went down over the {r.choice(PLACES)}.",
    lambda r: f"In the end, {r.choice(NAMES)} learned to be kind to every {r.choice(ANIMALS)}.",
]
NOTE_SENTENCES: list[Callable[[random.Random], str]] = [
    lambda r: f"Note on {r.choice(TOPICS)}: {r.choice(TECH)} {r.choice(EFFECTS)}.",
    lambda r: f"When {r.choice(TECH)} grows past {r.randint(2, 512)} MB, {r.choice(TOPICS)} {r.choice(EFFECTS)}.",
    lambda r: f"Measured: {r.randint(10, 900)} MB/s with {r.choice(TOPICS)}, {r.randint(1, 9)}x the baseline.",
    lambda r: f"Use `{r.choice(TOPICS)}` in {r.choice(TECH)}; it {r.choice(EFFECTS)} — see §{r.randint(1, 9)}.",
    lambda r: f"Ünïcode check: café, naïve, 東京, ✓ — {r.choice(TECH)} must keep them intact.",
]


def story(r: random.Random) -> str:
    return " ".join(r.choice(STORY_SENTENCES)(r) for _ in range(r.randint(3, 12)))


def note(r: random.Random) -> str:
    paragraphs = [" ".join(r.choice(NOTE_SENTENCES)(r) for _ in range(r.randint(1, 4))) for _ in range(r.randint(1, 3))]
    return "\n\n".join(paragraphs)


def chat(r: random.Random) -> dict[str, Any]:
    turns = []
    if r.random() < 0.3:
        turns.append({"role": "system", "content": "You are a patient storyteller."})
    for _ in range(r.randint(1, 3)):
        animal = r.choice(ANIMALS)
        turns.append({"role": "user", "content": f"Tell me about a {r.choice(FEELINGS)} {animal} at the {r.choice(PLACES)}."})
        turns.append({"role": "assistant", "content": story(r)})
    return {"conversations": turns}


def preference(r: random.Random) -> dict[str, Any]:
    a, b = r.randint(2, 99), r.randint(2, 99)
    prompt = f"What is {a} + {b}? Explain briefly."
    chosen = f"Add the ones, then the tens: {a} + {b} = {a + b}."
    rejected = f"{a} + {b} is about {a + b + r.choice([-10, -1, 1, 10])}."
    if r.random() < 0.5:
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    user = {"role": "user", "content": prompt}
    return {"chosen": [user, {"role": "assistant", "content": chosen}], "rejected": [user, {"role": "assistant", "content": rejected}]}


def rl_prompt(r: random.Random) -> dict[str, Any]:
    question = f"Write one sentence about a {r.choice(ANIMALS)} who {r.choice(VERBS)} a {r.choice(THINGS)}."
    if r.random() < 0.5:
        return {"prompt": question}
    return {"conversations": [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]}


EXAMPLES: dict[str, tuple[int, Callable[[random.Random], Any]]] = {
    "tinystories.jsonl": (50_000, lambda r: {"text": story(r)}),
    "custom_data.jsonl": (30_000, lambda r: {"text": note(r), "id": r.getrandbits(32)}),
    "tinystories_validation.jsonl": (1_200, lambda r: {"text": story(r)}),
    "custom_data_validation.jsonl": (800, lambda r: {"text": note(r), "id": r.getrandbits(32)}),
    "chat_sft.jsonl": (4_000, chat),
    "notes_sft.jsonl": (
        2_000,
        lambda r: {
            "conversations": [
                {"role": "user", "content": "Summarize a systems note."},
                {"role": "assistant", "content": note(r)},
            ]
        },
    ),
    "math_dpo.jsonl": (3_000, preference),
    "story_prompts.jsonl": (2_000, rl_prompt),
}


def _records(count: int, make: Callable[[random.Random], Any], seed: int, name: str) -> Iterator[bytes]:
    r = random.Random(f"{seed}:{name}")
    for _ in range(count):
        yield orjson.dumps(make(r))


def write_example_data(out_dir: Path, *, seed: int = 0) -> dict[Path, int]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (count, make) in EXAMPLES.items():
        path = out_dir / name
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            for line in _records(count, make, seed, name):
                handle.write(line + b"\n")
        tmp.replace(path)
        written[path] = count
    return written
