"""BERT's 80/10/10 masking and the labels <-> positions conversions (bigs.data.masking)."""

import numpy as np

from bigs.data.masking import BERT_UNCASED, IGNORE_INDEX, dynamic_mask, labels_from_positions, positions_from_labels

CLS, SEP, PAD, MASK = BERT_UNCASED.cls_id, BERT_UNCASED.sep_id, BERT_UNCASED.pad_id, BERT_UNCASED.mask_id


def test_dynamic_mask_statistics():
    rng = np.random.default_rng(0)
    n, length = 4000, 128
    lengths = rng.integers(8, length + 1, size=n)
    ids = rng.integers(1000, 30000, size=(n, length))
    ids[:, 0] = CLS
    ids[np.arange(n), lengths - 1] = SEP
    ids[np.arange(length) >= lengths[:, None]] = PAD
    special = np.isin(ids, (CLS, SEP, PAD))
    masked, labels = dynamic_mask(ids, special, np.random.default_rng(1), vocab_size=30522, mask_id=MASK,
                                  max_predictions=20)
    chosen = labels != IGNORE_INDEX
    assert not chosen[special].any()
    assert np.array_equal(labels[chosen], ids[chosen]) and np.array_equal(masked[~chosen], ids[~chosen])
    assert chosen.sum(axis=1).max() <= 20
    assert abs(chosen.sum() / (~special).sum() - 0.15) < 0.01
    as_mask = (masked[chosen] == MASK).mean()
    as_random = ((masked[chosen] != MASK) & (masked[chosen] != ids[chosen])).mean()
    assert abs(as_mask - 0.8) < 0.015 and abs(as_random - 0.1) < 0.01 and abs(1 - as_mask - as_random - 0.1) < 0.01
    again = dynamic_mask(ids, special, np.random.default_rng(1), vocab_size=30522, mask_id=MASK, max_predictions=20)
    assert np.array_equal(again[0], masked) and np.array_equal(again[1], labels)


def test_labels_and_positions_round_trip():
    batch = {
        "input_ids": np.zeros((2, 8), np.int32),
        "masked_lm_positions": np.array([[2, 5, 0], [1, 0, 0]], np.int32),
        "masked_lm_ids": np.array([[7, 9, 0], [4, 0, 0]], np.int32),
    }
    labels = labels_from_positions(batch)
    assert labels.tolist() == [[-100, -100, 7, -100, -100, 9, -100, -100], [-100, 4] + [-100] * 6]
    positions, ids = positions_from_labels(labels, 3)
    assert np.array_equal(positions, batch["masked_lm_positions"]) and np.array_equal(ids, batch["masked_lm_ids"])
