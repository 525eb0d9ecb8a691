"""bigs.weights: the checkpoint files and the two parameter layouts, shared by both frameworks."""

import numpy as np
import pytest
from flax import serialization

from bigs import weights
from bigs.errors import CheckpointError

FOLDERS = ("FlaxBiGSModel", "FlaxBiGSForPreTraining", "FlaxBiGSForMultipleChoice")


@pytest.mark.parametrize("folder", FOLDERS)
def test_msgpack_reads_and_writes_flax_bytes(golden_dir, folder):
    path = golden_dir / "config_c" / folder / "flax_model.msgpack"
    tree = weights.read_msgpack(str(path))
    assert weights.msgpack_bytes(tree) == path.read_bytes()                  # the original file, byte for byte
    assert weights.msgpack_bytes(tree) == serialization.msgpack_serialize(tree)
    flax_tree = serialization.msgpack_restore(path.read_bytes())
    assert weights.flatten(tree).keys() == weights.flatten(flax_tree).keys()
    for key, value in weights.flatten(flax_tree).items():
        np.testing.assert_array_equal(weights.flatten(tree)[key], value)


def test_chunked_arrays_as_flax_writes_them(monkeypatch):
    tree = {"big": {"kernel": np.arange(40, dtype=np.float32).reshape(5, 8)}, "small": np.ones(3, np.float32)}
    monkeypatch.setattr(weights, "_MAX_CHUNK_BYTES", 64)                    # 16 floats a chunk
    monkeypatch.setattr(serialization, "MAX_CHUNK_SIZE", 64)
    data = weights.msgpack_bytes(tree)
    assert data == serialization.msgpack_serialize(tree)
    back = weights.flatten(weights.read_msgpack_bytes(data))
    np.testing.assert_array_equal(back[("big", "kernel")], tree["big"]["kernel"])


def test_layouts_round_trip_and_name_every_kind(golden_dir):
    tree = weights.read_msgpack(str(golden_dir / "config_a" / "FlaxBiGSForPreTraining" / "flax_model.msgpack"))
    state = weights.to_torch_layout(tree)
    assert state["s4_bert.encoder.layer.0.dv.weight"].shape == (128, 64)                 # [out, in]
    assert state["s4_bert.embeddings.word_embeddings.weight"].shape == (1000, 64)
    assert "s4_bert.encoder.layer.1.LayerNorm.weight" in state and "s4_bert.encoder.layer.0.fs4.C" in state
    np.testing.assert_array_equal(state["s4_bert.encoder.layer.0.dv.weight"],
                                  tree["s4_bert"]["encoder"]["layer"]["0"]["dv"]["kernel"].T)
    back = weights.flatten(weights.from_torch_layout({**state, "cls.predictions.decoder.weight": np.zeros(1)}))
    assert back.keys() == weights.flatten(tree).keys()
    for key, value in weights.flatten(tree).items():
        np.testing.assert_array_equal(back[key], value)
    with pytest.raises(CheckpointError, match="has 3 dimensions"):
        weights.from_torch_layout({"classifier.weight": np.zeros((2, 2, 2))})


def test_safetensors_layout_is_told_by_metadata(tmp_path):
    from safetensors.numpy import save_file

    tree = {"classifier": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(3, np.float32)}}
    (tmp_path / "pt.safetensors").write_bytes(weights.safetensors_bytes(tree))
    save_file({"classifier/kernel": tree["classifier"]["kernel"], "classifier/bias": tree["classifier"]["bias"]},
              tmp_path / "flax.safetensors", metadata={"format": "flax"})
    save_file(weights.to_torch_layout(tree), tmp_path / "bare.safetensors")     # no metadata: by separator
    save_file(weights.to_torch_layout(tree), tmp_path / "odd.safetensors", metadata={"format": "tf"})
    for name in ("pt", "flax", "bare"):
        got = weights.read_safetensors(str(tmp_path / f"{name}.safetensors"))
        np.testing.assert_array_equal(got["classifier"]["kernel"], tree["classifier"]["kernel"])
    with pytest.raises(CheckpointError, match="format 'tf' is neither"):
        weights.read_safetensors(str(tmp_path / "odd.safetensors"))


def test_offline_hub_fails_at_once(monkeypatch):
    import huggingface_hub

    asked = []

    def fake_download(repo_id, filename, local_files_only=False, **kwargs):
        asked.append(local_files_only)
        from huggingface_hub.errors import LocalEntryNotFoundError
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not reach the Hugging Face hub for 'someone/x'"):
        weights.resolve_file("someone/x", "config.json")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "_connects", lambda host, port: False)      # no network
    with pytest.raises(CheckpointError, match="could not reach"):
        weights.resolve_file("someone/x", "config.json")
    assert asked == [True, True]                                             # never the 25-40 s of retries
