"""TrainCheckpointer: round trip, keep-k, and falling back past a damaged latest step."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigs.train.checkpointing import TrainCheckpointer


def _state(step: int) -> dict:
    return {
        "params": {"dense": {"kernel": jnp.full((3, 4), float(step)), "bias": jnp.arange(4.0) + step}},
        "opt_state": {"mu": jnp.full((3, 4), step / 10.0)},
        "step": jnp.int32(step),
        "rng": jax.random.key_data(jax.random.PRNGKey(step)),
    }


def _target() -> dict:
    return jax.tree.map(jnp.zeros_like, _state(0))


def _assert_state_equal(actual, expected) -> None:
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_round_trip(tmp_path):
    checkpointer = TrainCheckpointer(tmp_path / "ckpt")
    assert checkpointer.restore(_target()) is None
    meta = {"data_position": {"epoch": 1, "shard": 2, "offset": 7, "seed": 0, "num_shards": 3}, "note": "x"}
    checkpointer.save(5, _state(5), meta)
    step, state, restored_meta = TrainCheckpointer(tmp_path / "ckpt").restore(_target())
    assert step == 5
    assert restored_meta == meta
    _assert_state_equal(state, _state(5))
    assert jax.tree.structure(state) == jax.tree.structure(_state(5))


def test_keeps_last_k(tmp_path):
    checkpointer = TrainCheckpointer(tmp_path, keep=2)
    for step in (10, 20, 30, 40):
        checkpointer.save(step, _state(step), {"step": step})
    assert checkpointer.all_steps() == [30, 40]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["30", "40"]
    assert checkpointer.restore(_target())[0] == 40


def _truncate_largest_file(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)
    with open(largest, "r+b") as f:
        f.truncate(largest.stat().st_size // 2)


@pytest.mark.parametrize("damage", ["truncate_array_file", "delete_array_manifest", "delete_meta"])
def test_corrupt_latest_falls_back_with_warning(tmp_path, damage):
    checkpointer = TrainCheckpointer(tmp_path, keep=3)
    for step in (1, 2):
        checkpointer.save(step, _state(step), {"step": step})
    latest = tmp_path / "2"
    if damage == "truncate_array_file":
        _truncate_largest_file(latest / "state")
    elif damage == "delete_array_manifest":
        os.remove(latest / "state" / "manifest.ocdbt")
    else:
        os.remove(latest / "meta" / "metadata")
    with pytest.warns(RuntimeWarning, match="step 2"):
        step, state, meta = TrainCheckpointer(tmp_path, keep=3).restore(_target())
    assert step == 1 and meta == {"step": 1}
    _assert_state_equal(state, _state(1))


def test_interrupted_save_leaves_no_step(tmp_path):
    checkpointer = TrainCheckpointer(tmp_path)
    checkpointer.save(1, _state(1), {})
    # What a process killed mid-save leaves: orbax's temporary folder, never a bare step folder.
    (tmp_path / "2.orbax-checkpoint-tmp-123").mkdir()
    restored = TrainCheckpointer(tmp_path).restore(_target())
    assert restored[0] == 1


def test_ctrl_c_during_a_save_finishes_the_step_then_stops(tmp_path, monkeypatch):
    import signal

    checkpointer = TrainCheckpointer(tmp_path)
    manager = checkpointer._open()
    real_save = manager.save

    def save_with_ctrl_c(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)          # Ctrl-C arrives as the save starts
        return real_save(*args, **kwargs)

    monkeypatch.setattr(manager, "save", save_with_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save(1, _state(1), {"step": 1})
    checkpointer.close()
    assert signal.getsignal(signal.SIGINT) is handler
    step, state, meta = TrainCheckpointer(tmp_path).restore(_target())
    assert step == 1 and meta == {"step": 1}
    _assert_state_equal(state, _state(1))
