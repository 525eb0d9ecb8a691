"""The shard format (bigs.data.shards): reading back, bad shards, resumable batches."""

import json

import h5py
import numpy as np
import pytest

from bigs.data.masking import labels_from_positions, restore_original_ids
from bigs.data.shards import DataPosition, ShardDataset, read_shard, write_shard
from bigs.errors import ConfigError, DataError

from shard_samples import SEQ_LEN, all_examples, built, corpus_slice  # noqa: F401 (fixtures)


def test_bad_shards_raise_data_error(tmp_path):
    (tmp_path / "text.hdf5").write_text("not a shard")
    with pytest.raises(DataError, match="text.hdf5.*not an HDF5 file"):
        read_shard(tmp_path / "text.hdf5")
    with pytest.raises(DataError, match="does not exist"):
        read_shard(tmp_path / "missing.hdf5")
    with pytest.raises(DataError, match="is a folder; expected an HDF5 file"):
        read_shard(tmp_path)
    with h5py.File(tmp_path / "keys.hdf5", "w") as f:
        f["input_ids"] = np.zeros((2, 8), np.int32)
    with pytest.raises(DataError, match="expected the datasets"):
        read_shard(tmp_path / "keys.hdf5")
    good = {
        "input_ids": np.full((2, 8), 5, np.int32), "input_mask": np.ones((2, 8), np.int32),
        "segment_ids": np.zeros((2, 8), np.int32), "masked_lm_positions": np.zeros((2, 3), np.int32),
        "masked_lm_ids": np.zeros((2, 3), np.int32),
    }
    write_shard(tmp_path / "shape.hdf5", {**good, "segment_ids": np.zeros((2, 7), np.int32)})
    with pytest.raises(DataError, match=r"segment_ids has shape \(2, 7\)"):
        read_shard(tmp_path / "shape.hdf5")
    write_shard(tmp_path / "range.hdf5", {**good, "input_ids": np.full((2, 8), 40000, np.int32)})
    with pytest.raises(DataError, match=r"input_ids\[0, 0\] = 40000 is out of range; expected 0..30521"):
        read_shard(tmp_path / "range.hdf5", vocab_size=30522)
    write_shard(tmp_path / "position.hdf5", {**good, "masked_lm_positions": np.full((2, 3), 8, np.int32)})
    with pytest.raises(DataError, match="masked_lm_positions"):
        read_shard(tmp_path / "position.hdf5")


def test_reads_a_single_stacked_array(tmp_path):
    stacked = np.zeros((5, 3, 8), np.int32)
    stacked[0], stacked[1], stacked[3, :, 0], stacked[4, :, 0] = 7, 1, 2, 11
    with h5py.File(tmp_path / "stacked.hdf5", "w") as f:
        f["data"] = stacked
    shard = read_shard(tmp_path / "stacked.hdf5")
    assert shard["input_ids"].shape == (3, 8) and shard["masked_lm_positions"].shape == (3, 8)
    assert (labels_from_positions(shard)[:, 2] == 11).all()


# --------------------------------------------------------------------------------- iteration


@pytest.mark.parametrize("dynamic_masking", [False, True])
def test_resume_gives_the_same_batches(built, dynamic_masking):
    output_dir, info = built
    batch_size = 23  # does not divide the shard size, so batches straddle shards and epochs
    num_batches = 2 * info["num_examples"]["train"] // batch_size
    reference = [batch for batch, _ in zip_limit(ShardDataset(output_dir, seed=5, dynamic_masking=dynamic_masking)
                                                 .iterate(batch_size), num_batches)]
    stop = num_batches // 2 + 1
    for _, position in zip_limit(ShardDataset(output_dir, seed=5, dynamic_masking=dynamic_masking)
                                 .iterate(batch_size), stop):
        pass
    saved = json.loads(json.dumps(position.to_dict()))
    resumed = ShardDataset(output_dir, seed=5, dynamic_masking=dynamic_masking).iterate(
        batch_size, start=DataPosition.from_dict(saved))
    for expected, (batch, _) in zip(reference[stop:], resumed):
        assert all(np.array_equal(expected[name], batch[name]) for name in expected)
        assert batch["input_ids"].shape == (batch_size, SEQ_LEN)


def zip_limit(iterator, count):
    for index, item in enumerate(iterator):
        if index == count:
            return
        yield item


def test_each_epoch_sees_every_example_once(built):
    output_dir, info = built
    dataset = ShardDataset(output_dir, seed=1, dynamic_masking=True)
    epochs = []
    for epoch in range(2):
        start = DataPosition(epoch=epoch, seed=1, num_shards=dataset.num_shards)
        batches = [b for b, _ in dataset.iterate(64, start=start, num_epochs=epoch + 1, drop_remainder=False)]
        epochs.append(np.concatenate([restore_original_ids(b) for b in batches]))
    everything = restore_original_ids(all_examples(output_dir, "train"))
    assert len(epochs[0]) == info["num_examples"]["train"]
    for seen in epochs:
        assert sorted(map(bytes, seen)) == sorted(map(bytes, everything))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled per epoch


def test_resume_rejects_another_stream(built):
    dataset = ShardDataset(built[0], seed=0)
    with pytest.raises(ConfigError, match="seed=7"):
        next(dataset.iterate(4, start=DataPosition(seed=7, num_shards=dataset.num_shards)))
    with pytest.raises(ConfigError, match="data position"):
        DataPosition.from_dict({"epoch": 0})


def test_dataset_selection(built, tmp_path):
    output_dir, info = built
    assert ShardDataset(output_dir, max_shards=2).num_shards == 2
    assert ShardDataset(output_dir, split="test").num_shards == info["num_shards"]["test"]
    single = ShardDataset(output_dir / "test_shard_00000.hdf5", shuffle=False)
    (batch, _), = single.iterate(10_000, num_epochs=1, drop_remainder=False)
    assert len(batch["input_ids"]) == info["num_examples"]["test"]
    with pytest.raises(DataError, match="no shards in folder"):
        ShardDataset(tmp_path)
