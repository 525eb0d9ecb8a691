"""A built-in task for `bigs demo`: small, offline, and needing context from both sides.

Each example is a row of words with the marker "and" somewhere inside, e.g.

    "owl red fox and fox sun"   -> same        (the words around "and" are equal)
    "owl red fox and sun tree"  -> different

The label depends on the word to the LEFT of the marker and the word to the RIGHT of it,
and the marker moves, so the model must bring both neighbours together at one place: what
BiGS's forward and backward SSMs, multiplied by its gates, are for. The classes are
balanced (chance is 50%); the files are CSV with columns `sentence,label`, so the demo
runs through the same path as users' own files.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from ..tokenizer import SPECIAL_TOKENS

WORDS = ("red", "blue", "fox", "owl", "sun", "tree")
MARKER = "and"
LABELS = ("different", "same")


def make_examples(n: int, seed: int, min_words: int = 6, max_words: int = 20) -> list[tuple[str, str]]:
    """n (sentence, label) pairs, half "same" and half "different"."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        length = int(rng.integers(min_words, max_words + 1))
        words = list(rng.choice(WORDS, size=length))
        at = int(rng.integers(1, length - 1))  # the marker replaces a word with a neighbour each side
        words[at] = MARKER
        same = i % 2 == 1
        if same:
            words[at + 1] = words[at - 1]
        elif words[at + 1] == words[at - 1]:
            words[at + 1] = WORDS[(WORDS.index(words[at - 1]) + int(rng.integers(1, len(WORDS)))) % len(WORDS)]
        examples.append((" ".join(words), LABELS[int(same)]))
    order = rng.permutation(n)
    return [examples[i] for i in order]


def write_vocab(path: str) -> str:
    """A WordPiece vocab.txt: the special tokens, the marker and the words."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in (*SPECIAL_TOKENS, MARKER, *WORDS))
    return path


def write_demo_files(directory: str, num_train: int = 4000, num_eval: int = 500, num_test: int = 100,
                     seed: int = 0) -> dict[str, str]:
    """Write train.csv, validation.csv, test.csv (no labels) and vocab.txt; return their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = {"vocab": write_vocab(os.path.join(directory, "vocab.txt"))}
    for offset, (split, n) in enumerate((("train", num_train), ("validation", num_eval), ("test", num_test))):
        path = os.path.join(directory, f"{split}.csv")
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence"] if split == "test" else ["sentence", "label"])
            for sentence, label in make_examples(n, seed + 1000 * offset):
                writer.writerow([sentence] if split == "test" else [sentence, label])
        paths[split] = path
    return paths
