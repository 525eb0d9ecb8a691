"""Many devices on CPU: data parallel and parameter (FSDP) sharding give the 1-device losses
and the same held-out evaluation.

The 4 CPU devices come from XLA_FLAGS=--xla_force_host_platform_device_count=4, which must
be set before jax is imported, so the runs happen in a subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from jax.sharding import PartitionSpec

from bigs.errors import ConfigError
from bigs.train import sharding

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
import jax
from bigs.train.output_dir import read_metrics
from bigs.train.pretrain import PretrainArgs, run_pretraining
assert len(jax.devices()) == 4, jax.devices()
shards, out = sys.argv[1], sys.argv[2]
results = {}
for name, (num_devices, fsdp) in {"single": (1, 1), "data4": (4, 1), "fsdp4": (4, 4)}.items():
    args = PretrainArgs(
        output_dir=f"{out}/{name}", dataset_path=shards, max_seq_length=32, n_layers=2, hidden_size=64,
        intermediate_size=128, num_ssm=8, per_device_train_batch_size=8 // num_devices,
        per_device_eval_batch_size=4, max_eval_batches=2, max_steps=4, warmup_steps=1,
        learning_rate=3e-3, logging_steps=1, save_steps=4, eval_steps=4, num_devices=num_devices,
        fsdp=fsdp, disable_tqdm=True, report_to="none", hidden_dropout_prob=0.1)
    result = run_pretraining(args)
    results[name] = {"losses": [r["loss"] for r in read_metrics(args.output_dir)],
                     "sharded": result["sharded_param_leaves"], "eval": result["eval"]}
print("RESULTS" + json.dumps(results))
"""


def test_leaf_spec_shards_largest_divisible_dimension():
    assert sharding.leaf_spec((64, 128), 4, min_size=1) == PartitionSpec(None, "fsdp")
    assert sharding.leaf_spec((2, 64, 30), 4, min_size=1) == PartitionSpec(None, "fsdp", None)
    assert sharding.leaf_spec((30, 7), 4, min_size=1) == PartitionSpec()
    assert sharding.leaf_spec((32, 64), 4) == PartitionSpec()  # small: replicated
    assert sharding.leaf_spec((4096, 1024), 1) == PartitionSpec()


def test_parse_mesh():
    assert sharding.parse_mesh("2x2") == (4, 2)
    assert sharding.parse_mesh("4x1") == (4, 1)
    with pytest.raises(ConfigError, match="DATAxFSDP"):
        sharding.parse_mesh("4")


@pytest.mark.slow
def test_four_cpu_devices_match_one(tmp_path):
    from test_pretrain import make_tiny_shards

    shards = make_tiny_shards(tmp_path / "data")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(shards), str(tmp_path / "runs")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.split("RESULTS", 1)[1])
    single = results.pop("single")
    assert single["sharded"] == 0 and len(single["losses"]) == 4
    for name, run in results.items():
        np.testing.assert_allclose(run["losses"], single["losses"], rtol=2e-5, err_msg=name)
        # --max_eval_batches 2 of 4 sequences: the same 8 held-out sequences on 1 and 4 devices
        assert run["eval"]["masked_tokens"] == single["eval"]["masked_tokens"], name
        np.testing.assert_allclose(run["eval"]["loss"], single["eval"]["loss"], rtol=2e-5, err_msg=name)
    assert results["data4"]["sharded"] == 0
    assert results["fsdp4"]["sharded"] > 0


@pytest.mark.skipif(os.environ.get("BIGS_MULTIPROCESS_TEST") != "1",
                    reason="slow (~60 s on 2 cores): set BIGS_MULTIPROCESS_TEST=1")
def test_two_processes_with_jax_distributed_match_one(tmp_path):
    """Two CPU processes of 2 devices each (gloo collectives) on a 2x2 mesh = one device."""
    import socket

    from test_pretrain import make_tiny_shards, tiny_flags

    shards = make_tiny_shards(tmp_path / "data")
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    flags = ["--num_total_train_steps", "3", "--eval_steps", "0", "--report_to", "none",
             "--per_device_train_batch_size", "2"]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    distributed = ["--mesh", "2x2", "--coordinator_address", f"localhost:{port}", "--num_processes", "2"]
    processes = [subprocess.Popen([sys.executable, str(ROOT / "pretrain.py"),
                                   *tiny_flags(shards, tmp_path / "two", *flags), *distributed,
                                   "--process_id", str(i)], env=env, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    single = subprocess.run([sys.executable, str(ROOT / "pretrain.py"),
                             *tiny_flags(shards, tmp_path / "one", *flags[:-1], "8"), "--num_devices", "1"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]

    def losses(folder):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=2e-5)
