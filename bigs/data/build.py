"""Building pretraining shards: text documents -> packed examples -> masked HDF5 shards.

`build_shards` (the job of `bigs build-shards`) reads documents (bigs.data.text), tokenizes
them, packs their sentences into [CLS] A [SEP] (B [SEP]) examples, masks them once
(bigs.data.masking) and writes shards in the layout of bigs.data.shards.

Source: the packing and masking follow BERT's create_pretraining_data.py
(google-research/bert). Differences: sentences longer than (max_seq_length - 3) // 2 tokens
are first cut into pieces; a pair too long for max_seq_length loses tokens from the end of
its longer segment (BERT's from a random end); a random B always comes from another document;
the number of tokens masked in a sequence counts only the maskable ones (BERT's counts [CLS]
and [SEP] too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tokenizers

from ..errors import ConfigError, DataError
from ..files import check_writable_folder, write_text
from ..tokenizer import VOCAB_FILE, load_wordpiece, write_vocab
from .masking import SpecialTokens, mask_examples
from .shards import (DATA_INFO, NSP_FIELD, STREAM_PACK, STREAM_SHUFFLE, STREAM_SPLIT, STREAM_STATIC_MASK, stream_rng,
                     write_shard)
from .text import expand_inputs, read_documents


def build_shards(
    input_files: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    tokenizer,
    max_seq_length: int = 128,
    masked_lm_prob: float = 0.15,
    max_predictions_per_seq: int = 20,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 1,
    heldout_fraction: float = 0.01,
    examples_per_shard: int = 16384,
    seed: int = 0,
    next_sentence: bool = True,
    overwrite: bool = False,
    tokenizer_source: str | None = None,
) -> dict:
    """Builds statically masked train and held-out shards from raw text; returns data_info.

    Documents (see `read_documents`) are shuffled by `seed`; a `heldout_fraction` of them
    (at least one when the fraction is positive) go to the held-out split, so the splits share
    no document. Train documents are packed `dupe_factor` times (each with its own masks),
    held-out ones once. Examples are shuffled, masked with `dynamic_mask` and written as
    output_dir/train_shard_NNNNN.hdf5 and test_shard_NNNNN.hdf5, beside vocab.txt and
    data_info.json. The output is a function of the inputs and the arguments alone.

    Args:
      tokenizer: a tokenizers.Tokenizer (BERT WordPiece), a BiGSTokenizer (its `.backend`),
        or the path of a vocab.txt.
      next_sentence: pack [CLS] A [SEP] B [SEP] pairs with next_sentence_labels; False packs
        single segments (segment_ids all 0), as the corpus BiGS was trained on.
      overwrite: replace an earlier build in output_dir instead of refusing (its shards are
        deleted only once the new input is known to hold text).
      tokenizer_source: what data_info records as the tokenizer's source (default: the
        path given, or the tokenizer's type).

    Returns:
      data_info (also written as output_dir/data_info.json): the arguments, the vocabulary's
      special tokens and sha256, and per split the numbers of documents, examples, shards and
      masked tokens.

    Raises:
      ConfigError: an argument is out of range (named with its value), or `tokenizer` is of
        another type.
      DataError: an input is missing, unreadable or holds no text; the vocabulary lacks a
        special token; output_dir holds an earlier build or another vocab.txt and overwrite
        is False.
      ConfigError: output_dir cannot be a writable folder (it is a file, or under one).

    Warns:
      UnicodeWarning: once for each input file that is not UTF-8 (bigs.data.text.read_text).
    """
    check_build_arguments(max_seq_length, masked_lm_prob, max_predictions_per_seq, short_seq_prob,
                           dupe_factor, heldout_fraction, examples_per_shard)
    source = tokenizer_source or (str(tokenizer) if isinstance(tokenizer, (str, os.PathLike))
                                  else type(tokenizer).__name__)
    backend = _as_backend(tokenizer)
    special = SpecialTokens.from_tokenizer(backend)
    output_dir = Path(output_dir)
    old_shards = check_output_dir(output_dir, overwrite,
                                  vocab=tokenizer if isinstance(tokenizer, (str, os.PathLike)) else None)

    files = expand_inputs(input_files)
    piece_length = max(1, (max_seq_length - 3) // 2)  # so a long sentence still leaves room for B
    text_documents = [document for path in files for document in read_documents(path)]
    documents = _tokenize_documents(text_documents, backend, piece_length)
    if not documents:
        raise DataError(f"input files {[str(f) for f in files]} hold no text; "
                        "expected documents separated by blank lines")
    for path in old_shards:         # replaced only now that the input is known to be good
        path.unlink()
    vocab_path = write_vocab(backend, output_dir)
    order = stream_rng(seed, STREAM_SPLIT).permutation(len(documents))
    num_heldout = 0
    if heldout_fraction > 0 and len(documents) > 1:
        num_heldout = min(len(documents) - 1, max(1, round(heldout_fraction * len(documents))))
    splits = {
        "test": ([documents[i] for i in order[:num_heldout]], 1),
        "train": ([documents[i] for i in order[num_heldout:]], dupe_factor),
    }

    info = {
        "layout": "per-key HDF5 shards, as read by the original BiGS (academic-budget-bert)",
        "vocab_size": special.vocab_size,
        "special_tokens": dataclasses.asdict(special),
        "tokenizer": {"source": source, "vocab_file": vocab_path.name,
                      "vocab_sha256": hashlib.sha256(vocab_path.read_bytes()).hexdigest()},
        "max_seq_length": max_seq_length,
        "max_predictions_per_seq": max_predictions_per_seq,
        "masked_lm_prob": masked_lm_prob,
        "short_seq_prob": short_seq_prob,
        "dupe_factor": dupe_factor,
        "heldout_fraction": heldout_fraction,
        "examples_per_shard": examples_per_shard,
        "next_sentence": next_sentence,
        "seed": seed,
        "input_files": [str(f) for f in files],
        "num_documents": {}, "num_examples": {}, "num_shards": {}, "num_masked_tokens": {},
    }
    for split_index, (split, (split_documents, repeats)) in enumerate(splits.items()):
        pack_rng = stream_rng(seed, STREAM_PACK, split_index)
        examples = [
            example
            for _ in range(repeats)
            for index in range(len(split_documents))
            for example in _pack_document(split_documents, index, max_seq_length, short_seq_prob,
                                          next_sentence, pack_rng)
        ]
        arrays = _to_arrays(examples, special, max_seq_length, next_sentence)
        shuffled = stream_rng(seed, STREAM_SHUFFLE, split_index).permutation(len(examples))
        arrays = {name: values[shuffled] for name, values in arrays.items()}
        mask_rng = stream_rng(seed, STREAM_STATIC_MASK, split_index)
        arrays = mask_examples(arrays, arrays["input_ids"], special, mask_rng, masked_lm_prob,
                               max_predictions_per_seq)
        num_shards = math.ceil(len(examples) / examples_per_shard)
        for shard in range(num_shards):
            rows = slice(shard * examples_per_shard, (shard + 1) * examples_per_shard)
            path = output_dir / f"{split}_shard_{shard:05d}.hdf5"
            write_shard(path, {name: values[rows] for name, values in arrays.items()})
        info["num_documents"][split] = len(split_documents)
        info["num_examples"][split] = len(examples)
        info["num_shards"][split] = num_shards
        info["num_masked_tokens"][split] = int((arrays["masked_lm_positions"] > 0).sum())

    write_text(output_dir / DATA_INFO, json.dumps(info, indent=2) + "\n")
    return info


def check_build_arguments(max_seq_length, masked_lm_prob, max_predictions_per_seq, short_seq_prob,
                          dupe_factor, heldout_fraction, examples_per_shard, prefix: str = "") -> None:
    """ConfigError naming the first impossible value (as `prefix` + its name: "--" for flags)."""
    checks = [
        ("max_seq_length", max_seq_length, max_seq_length >= 5, "an integer >= 5 ([CLS] A [SEP] B [SEP])"),
        ("masked_lm_prob", masked_lm_prob, 0 < masked_lm_prob < 1, "a probability in (0, 1)"),
        ("max_predictions_per_seq", max_predictions_per_seq, max_predictions_per_seq >= 1,
         "a positive integer"),
        ("short_seq_prob", short_seq_prob, 0 <= short_seq_prob <= 1, "a probability in [0, 1]"),
        ("dupe_factor", dupe_factor, dupe_factor >= 1, "a positive integer"),
        ("heldout_fraction", heldout_fraction, 0 <= heldout_fraction < 1, "a fraction in [0, 1)"),
        ("examples_per_shard", examples_per_shard, examples_per_shard >= 1, "a positive integer"),
    ]
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{prefix}{name}={value}; expected {expected}")


def _as_backend(tokenizer) -> tokenizers.Tokenizer:
    """A tokenizers.Tokenizer as given, the `.backend` of a BiGSTokenizer, or one read from a vocab path."""
    if isinstance(tokenizer, (str, os.PathLike)):
        return load_wordpiece(tokenizer)
    backend = getattr(tokenizer, "backend", tokenizer)
    if not isinstance(backend, tokenizers.Tokenizer):
        raise ConfigError(
            f"tokenizer of type {type(tokenizer).__name__}; expected a tokenizers.Tokenizer, "
            "an object with a .backend tokenizers.Tokenizer, or a vocab.txt path"
        )
    return backend


def check_output_dir(output_dir: Path, overwrite: bool, vocab: str | os.PathLike | None = None) -> list[Path]:
    """Checks, before any work, that output_dir can take a build; returns the shards of an
    earlier build there (to delete once the new input is known to be good). ConfigError
    when it cannot be a writable folder; DataError when it holds an earlier build (shards,
    data_info.json) or a vocab.txt other than `vocab` (the one this build uses), unless
    `overwrite`. Writes nothing."""
    check_writable_folder(output_dir)
    if not output_dir.is_dir():
        return []
    old = sorted(p for p in output_dir.iterdir() if re.fullmatch(r"(train|test)_shard_\d+\.hdf5", p.name))
    theirs = [p.name for p in old[:1]] + [name for name in (DATA_INFO, VOCAB_FILE) if (output_dir / name).exists()]
    if vocab is not None and VOCAB_FILE in theirs and Path(vocab).exists() and \
            (output_dir / VOCAB_FILE).samefile(vocab):
        theirs.remove(VOCAB_FILE)
    if theirs and not overwrite:
        shown = f"{len(old)} shards (e.g. {old[0].name})" if old else ", ".join(theirs)
        raise DataError(f"output_dir {str(output_dir)!r} already holds {shown}; expected a folder without an "
                        "earlier build, or pass --overwrite to replace it")
    return old


def _tokenize_documents(documents: list[list[str]], tokenizer: tokenizers.Tokenizer, piece_length: int):
    """Documents as lists of token-id lists; sentences longer than piece_length are cut into pieces."""
    flat = [sentence for document in documents for sentence in document]
    encodings = tokenizer.encode_batch(flat, add_special_tokens=False)
    tokenized, cursor = [], 0
    for document in documents:
        pieces = []
        for encoding in encodings[cursor : cursor + len(document)]:
            ids = encoding.ids
            pieces.extend(ids[start : start + piece_length] for start in range(0, len(ids), piece_length))
        cursor += len(document)
        if pieces:
            tokenized.append(pieces)
    return tokenized


def _pack_document(
    documents: list[list[list[int]]],
    index: int,
    max_seq_length: int,
    short_seq_prob: float,
    next_sentence: bool,
    rng: np.random.Generator,
) -> list[tuple[list[int], list[int], int]]:
    """Packs one document's sentences into (segment A, segment B, is_random_next) triples.

    Consecutive sentences are gathered until they reach a target length (the full length, or
    with probability short_seq_prob a shorter random one). With `next_sentence`, the gathered
    sentences are split at a random sentence boundary into A and B; half the time (always when
    there is a single sentence) B is replaced by text from a random other document and the
    sentences after A are put back for the next example. Without it, everything goes in A.
    """
    document = documents[index]
    max_tokens = max_seq_length - (3 if next_sentence else 2)
    examples = []
    chunk: list[list[int]] = []
    target = _target_length(max_tokens, short_seq_prob, rng)
    i = 0
    while i < len(document):
        chunk.append(document[i])
        i += 1
        if i < len(document) and sum(map(len, chunk)) < target:
            continue
        if not next_sentence:
            examples.append((_join(chunk)[:max_tokens], [], 0))
        else:
            split = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
            first = _join(chunk[:split])
            if len(documents) > 1 and (len(chunk) == 1 or rng.random() < 0.5):
                second = _random_continuation(documents, index, target - len(first), rng)
                i -= len(chunk) - split
                random_next = 1
            else:
                second, random_next = _join(chunk[split:]), 0
            if not second:  # one sentence and no other document: split the sentence itself
                half = len(first) // 2
                first, second = first[:half], first[half:]
            first, second = _truncate_pair(first, second, max_tokens)
            if first and second:
                examples.append((first, second, random_next))
        chunk = []
        target = _target_length(max_tokens, short_seq_prob, rng)
    return examples


def _target_length(max_tokens: int, short_seq_prob: float, rng: np.random.Generator) -> int:
    if rng.random() < short_seq_prob:
        return int(rng.integers(2, max_tokens + 1))
    return max_tokens


def _join(sentences: list[list[int]]) -> list[int]:
    return [token for sentence in sentences for token in sentence]


def _random_continuation(documents, avoid: int, length: int, rng: np.random.Generator) -> list[int]:
    """At least `length` tokens (if there are) from a random sentence on of another document."""
    other = int(rng.integers(0, len(documents) - 1))
    other += other >= avoid
    document = documents[other]
    tokens: list[int] = []
    for sentence in document[int(rng.integers(0, len(document))) :]:
        tokens.extend(sentence)
        if len(tokens) >= length:
            break
    return tokens


def _truncate_pair(first: list[int], second: list[int], max_tokens: int) -> tuple[list[int], list[int]]:
    """Trims the end of the longer segment until both fit in max_tokens."""
    while len(first) + len(second) > max_tokens:
        if len(first) > len(second):
            first = first[:-1]
        else:
            second = second[:-1]
    return first, second


def _to_arrays(
    examples: list[tuple[list[int], list[int], int]], special: SpecialTokens, max_seq_length: int,
    next_sentence: bool,
) -> dict[str, np.ndarray]:
    """[CLS] A [SEP] (B [SEP]) then [PAD]: input_ids, input_mask, segment_ids [n, L] (, NSP labels [n])."""
    n = len(examples)
    input_ids = np.full((n, max_seq_length), special.pad_id, dtype=np.int32)
    input_mask = np.zeros((n, max_seq_length), dtype=np.int32)
    segment_ids = np.zeros((n, max_seq_length), dtype=np.int32)
    next_sentence_labels = np.zeros(n, dtype=np.int32)
    for row, (first, second, random_next) in enumerate(examples):
        tokens = [special.cls_id, *first, special.sep_id]
        if second:
            tokens += [*second, special.sep_id]
            segment_ids[row, len(first) + 2 : len(tokens)] = 1
        input_ids[row, : len(tokens)] = tokens
        input_mask[row, : len(tokens)] = 1
        next_sentence_labels[row] = random_next
    arrays = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
    if next_sentence:
        arrays[NSP_FIELD] = next_sentence_labels
    return arrays
