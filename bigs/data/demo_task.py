"""A built-in task for `bigs demo`: small, offline, and needing context from both sides.

Each example is a row of filler words holding the word "open" once and the word "close"
once, at random places:

    "sun open owl red fox close tree"   -> in_order   ("open" comes before "close")
    "sun close owl red fox open tree"   -> reversed

The words themselves are the same in both classes; only their order tells them apart. At
every position between the two, BiGS's forward SSM has seen one of them and its backward
SSM the other, and the gate multiplies the two: the layer's bidirectional mixing is what
the task exercises. The classes are balanced (chance is 50%); the files are CSV with
columns `sentence,label`, so the demo runs through the same path as users' own files.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from ..files import write_text
from ..tokenizer import SPECIAL_TOKENS

WORDS = ("red", "blue", "fox", "owl", "sun", "tree", "rain", "stone", "river", "bird", "cloud", "leaf")
FIRST, SECOND = "open", "close"
LABELS = ("reversed", "in_order")
def make_examples(n: int, seed: int, min_words: int = 6, max_words: int = 30) -> list[tuple[str, str]]:
    """n (sentence, label) pairs, half "in_order" and half "reversed"."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        length = int(rng.integers(min_words, max_words + 1))
        words = list(rng.choice(WORDS, size=length))
        left, right = sorted(rng.choice(length, size=2, replace=False))
        in_order = i % 2 == 1
        words[left], words[right] = (FIRST, SECOND) if in_order else (SECOND, FIRST)
        examples.append((" ".join(words), LABELS[int(in_order)]))
    order = rng.permutation(n)
    return [examples[i] for i in order]


def demo_files(num_train: int = 4000, num_eval: int = 500, num_test: int = 100, seed: int = 0) -> dict[str, str]:
    """{file name: content} of the task: vocab.txt (the special tokens and the task's words),
    train.csv, validation.csv and test.csv (no labels). A function of the arguments alone."""
    files = {"vocab.txt": "".join(token + "\n" for token in (*SPECIAL_TOKENS, FIRST, SECOND, *WORDS))}
    for offset, (split, n) in enumerate((("train", num_train), ("validation", num_eval), ("test", num_test))):
        rows = io.StringIO(newline="")
        writer = csv.writer(rows)
        writer.writerow(["sentence"] if split == "test" else ["sentence", "label"])
        for sentence, label in make_examples(n, seed + 1000 * offset):
            writer.writerow([sentence] if split == "test" else [sentence, label])
        files[f"{split}.csv"] = rows.getvalue()
    return files


def write_demo_files(directory: str, num_train: int = 4000, num_eval: int = 500, num_test: int = 100,
                     seed: int = 0) -> dict[str, str]:
    """Write `demo_files` into `directory`; return their paths as {"vocab", "train", "validation", "test"}."""
    paths = {}
    for name, text in demo_files(num_train, num_eval, num_test, seed).items():
        paths[name.split(".")[0]] = str(write_text(os.path.join(directory, name), text))
    return paths
