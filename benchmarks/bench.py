"""BiGS (Flax, and PyTorch in float32 and bfloat16) vs Hugging Face BERT on this machine:
forward pass and MLM training step.

Each case (model x mode x length) runs in a fresh subprocess, so its peak memory is its own.
Reports tokens/s, ms per call, peak memory, compile time, model construction time and
model-FLOPs utilisation (MFU) against the matmul peak measured at the start of the same run
in the same framework and dtype (square matmuls, the fastest of several calls; the larger
size is the peak): jax's for Flax BiGS, torch's (MKL in float32, oneDNN in bfloat16 on a
CPU) for PyTorch BiGS and BERT. MFU* is against a matmul timed in each case's own process
right after it (honest when the machine's speed drifts during a run).

    python benchmarks/bench.py                          # base size, L = 128 .. 16384
    python benchmarks/bench.py --lengths 128 512 --no-bert --json out.json
    python benchmarks/bench.py --dtype bfloat16 --batch 32 --repeats 20   # on a GPU
    python benchmarks/bench.py --quick --in-process     # tiny model, seconds (the test)
    python benchmarks/bench.py --lengths 512 16384 --train-max-length 128 --no-bert   # Flax vs PyTorch BiGS

Base size: 12 layers, hidden 768, intermediate 3072, num_ssm 64, vocab 30522; batch 8 at
L <= 512 (--batch) and 1 above (shared/ANCHORS.md). On CPU memory is the process's peak
RSS; on a GPU it is the device's peak allocation (jax's allocator / torch.cuda). float32
on a GPU means each framework's default fp32 matmul, TF32 on recent NVIDIA GPUs: jax's
default, and torch's once `allow_tf32` is set (done here, so both compute alike); the SSM
convolution's matmuls run as three bfloat16 passes (config conv_precision "auto"). bfloat16 keeps float32 params (BiGS dtype=bfloat16, BERT
under torch.autocast). PyTorch BiGS (bigs.torch) runs in float32 ("bigs-torch") and under
torch.autocast bfloat16 ("bigs-torch-bf16") in every run, whatever --dtype; its training
step computes vocabulary logits at every position, as BERT's (transformers' MLM heads), so
its FLOPs count the head there. BERT and PyTorch BiGS need the `bench` extra (torch,
transformers); BERT is skipped above --bert-max-length. Like the `bigs` training commands, the script first restarts itself
with malloc on huge pages where that applies (bigs/runtime.py; BIGS_HUGEPAGES=0 for 4 KB
pages), and the cases inherit that; the JSON's "hugepages" says which.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from bigs.runtime import hugepages_on, relaunch_with_hugepages

TORCH_BIGS = ("bigs-torch", "bigs-torch-bf16")      # PyTorch BiGS: float32, and bfloat16 autocast
COMPILED = ("bigs-torch-compile", "bigs-torch-bf16-compile")   # the same under torch.compile (--torch-compile)
BASE = dict(num_hidden_layers=12, hidden_size=768, intermediate_size=3072, num_ssm=64, vocab_size=30522)
TINY = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_ssm=16, vocab_size=1000)
MASK_FRACTION = 0.15


# ----------------------------------------------------------------------- FLOPs
def model_flops(model: str, mode: str, size: dict, batch: int, length: int) -> float:
    """Model FLOPs of one call (2 per multiply-add; backward = 2x forward).

    BiGS layer: seven dense layers 2(3HI + 4H^2) per token (the convolutions are not
    counted). BERT layer: 2(4H^2 + 2HI + 2LH). The MLM head (transform + decoder) is
    counted where it runs: BiGS at the labelled positions, BERT at every position.
    """
    H, I, V, layers = size["hidden_size"], size["intermediate_size"], size["vocab_size"], size["num_hidden_layers"]
    tokens = batch * length
    if model.startswith("bigs"):
        per_token = 2 * (3 * H * I + 4 * H * H)
        head_tokens = tokens if model in TORCH_BIGS + COMPILED else int(round(MASK_FRACTION * length)) * batch
    else:
        per_token = 2 * (4 * H * H + 2 * H * I + 2 * length * H)
        head_tokens = tokens
    forward = layers * per_token * tokens
    if mode == "forward":
        return float(forward)
    return float(3 * (forward + head_tokens * 2 * (H * H + H * V)))


def save_json(path: str | None, result: dict) -> None:
    """Write a benchmark's result to `path` (nothing when None)."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)


# ----------------------------------------------------------------------- cases
def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _labels(rng, batch, length, vocab):
    import numpy as np

    labels = np.full((batch, length), -100, np.int64)
    count = max(1, int(round(MASK_FRACTION * length)))
    for row in labels:
        row[rng.choice(length, count, replace=False)] = rng.randint(1, vocab, count)
    return labels


def run_probe(case: dict) -> dict:
    import jax

    device = jax.devices()[0]
    return {"platform": jax.default_backend(), "device": device.device_kind}


def _device_peak_gb():
    """Peak bytes held on the first accelerator (jax's allocator); None on CPU."""
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return None
    stats = device.memory_stats() or {}
    return stats.get("peak_bytes_in_use", 0) / 1e9


def run_matmul(case: dict) -> dict:
    import jax
    import jax.numpy as jnp

    n = case["n"]
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), case.get("dtype", "float32"))
    matmul = jax.jit(jnp.matmul)
    matmul(a, a).block_until_ready()
    # A peak is the best the machine did: the fastest of the repeats, not their median.
    seconds = min(_timed(lambda: matmul(a, a).block_until_ready(), 1) for _ in range(case["repeats"]))
    return {"gflops": 2 * n ** 3 / seconds / 1e9}


def run_torch_matmul(case: dict) -> dict:
    """torch's matmul peak in case["dtype"] (MKL in float32, oneDNN in bfloat16 on a CPU)."""
    import torch

    dtype = getattr(torch, case.get("dtype", "float32"))
    a = torch.randn(case["n"], case["n"]).to(dtype)
    torch.matmul(a, a)
    seconds = min(_timed(lambda: torch.matmul(a, a), 1) for _ in range(case["repeats"]))
    return {"gflops": 2 * case["n"] ** 3 / seconds / 1e9}


def run_bigs_torch(case: dict) -> dict:
    """PyTorch BiGS (bigs.torch), float32 or bfloat16 autocast, on the CPU (or CUDA)."""
    import torch

    import bigs.torch as bt

    size, length = case["size"], case["length"]
    device = "cuda" if case.get("platform") == "gpu" and torch.cuda.is_available() else "cpu"
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled="bf16" in case["model"])
    torch.manual_seed(0)
    config = bt.BiGSTransformersConfig(**size, max_position_embeddings=length, hidden_dropout_prob=0.0)
    start = time.perf_counter()
    model = (bt.BiGSModel if case["mode"] == "forward" else bt.BiGSForMaskedLM)(config).to(device)
    construct = time.perf_counter() - start
    run = torch.compile(model) if case["model"] in COMPILED else model
    return _time_torch_model(case, model, run, autocast, device, construct)


def bigs_program(model, mode: str, batch: int, length: int, **options):
    """Compile one BiGS call on random tokens: "forward" (last hidden state), "grad" (MLM loss
    and gradients) or "train" (an AdamW step on them, params and optimiser state donated).
    `options` go to module.apply (e.g. remat_policy, conv_backend).
    Returns (call, compile seconds); call() runs it once and waits for it."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    vocab = model.config.vocab_size
    rng = np.random.RandomState(0)
    ids = jnp.asarray(rng.randint(1, vocab, (batch, length)), jnp.int32)
    inputs = (ids, jnp.ones_like(ids), jnp.zeros_like(ids), jnp.broadcast_to(jnp.arange(length), ids.shape))
    if mode == "forward":
        def forward(params, *inputs):
            return model.module.apply({"params": params}, *inputs, **options).last_hidden_state
        fn, args = jax.jit(forward), (model.params, *inputs)
    else:
        labels = jnp.asarray(_labels(rng, batch, length, vocab), jnp.int32)
        max_predictions = int(round(MASK_FRACTION * length)) or 1
        optimizer = optax.adamw(1e-4, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.05)

        def loss_fn(params):   # as in training: deterministic=False (and so no token blocks)
            return model.module.apply({"params": params}, *inputs, labels, max_predictions=max_predictions,
                                      deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)},
                                      method=model.module_class.mlm_loss, **options).loss

        def train_step(params, opt_state):
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss
        if mode == "grad":
            fn, args = jax.jit(jax.value_and_grad(loss_fn)), (model.params,)
        else:
            fn, args = jax.jit(train_step, donate_argnums=(0, 1)), (model.params, optimizer.init(model.params))

    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    state = {"args": args}

    def call():
        out = compiled(*state["args"])
        jax.block_until_ready(out)
        if mode == "train":
            state["args"] = out[:2]
    return call, compile_s


def run_bigs(case: dict) -> dict:
    import jax

    from bigs import BiGSConfig, FlaxBiGSForMaskedLM, FlaxBiGSModel

    batch, length = case["batch"], case["length"]
    # Dropout off, as BERT's below (the train step runs with deterministic=False).
    config = BiGSConfig(**case["size"], max_position_embeddings=length, remat=case["model"] == "bigs-remat",
                        hidden_dropout_prob=0.0)
    start = time.perf_counter()
    model = (FlaxBiGSModel if case["mode"] == "forward" else FlaxBiGSForMaskedLM)(config, dtype=case["dtype"])
    jax.block_until_ready(model.params)
    construct = time.perf_counter() - start

    call, compile_s = bigs_program(model, case["mode"], batch, length)
    call()
    return {"seconds": _timed(call, case["repeats"]), "compile_s": compile_s, "construct_s": construct,
            "peak_device_gb": _device_peak_gb()}


def run_bert(case: dict) -> dict:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    size, length = case["size"], case["length"]
    device = "cuda" if case.get("platform") == "gpu" and torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True     # what jax does by default on GPU
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=case["dtype"] == "bfloat16")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=size["vocab_size"], hidden_size=size["hidden_size"],
                        num_hidden_layers=size["num_hidden_layers"], intermediate_size=size["intermediate_size"],
                        num_attention_heads=max(1, size["hidden_size"] // 64), max_position_embeddings=length,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
    start = time.perf_counter()
    model = (BertModel if case["mode"] == "forward" else BertForMaskedLM)(config).to(device)
    construct = time.perf_counter() - start
    return _time_torch_model(case, model, model, autocast, device, construct)


def _time_torch_model(case: dict, model, run, autocast, device: str, construct: float) -> dict:
    """Time a transformers-style torch `model` (called through `run`, which may be its
    torch.compile'd self) on random tokens: a forward pass without gradients, or an AdamW MLM
    training step. The first call is a warm-up; with `run` compiled, its extra time is the
    compile time."""
    import numpy as np
    import torch

    size, batch, length = case["size"], case["batch"], case["length"]
    rng = np.random.RandomState(0)
    ids = torch.from_numpy(rng.randint(1, size["vocab_size"], (batch, length))).to(device)
    mask = torch.ones_like(ids)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if case["mode"] == "forward":
        model.eval()

        def call():
            with torch.no_grad(), autocast:
                run(input_ids=ids, attention_mask=mask)
            sync()
    else:
        model.train()
        labels = torch.from_numpy(_labels(rng, batch, length, size["vocab_size"])).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05)

        def call():
            optimizer.zero_grad()
            with autocast:
                loss = run(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            sync()
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    seconds = _timed(call, case["repeats"])
    return {"seconds": seconds, "compile_s": max(0.0, first - seconds) if run is not model else 0.0,
            "construct_s": construct,
            "peak_device_gb": torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None}


RUNNERS = {"probe": run_probe, "matmul": run_matmul, "torch-matmul": run_torch_matmul, "bigs": run_bigs,
           "bigs-remat": run_bigs, "bert": run_bert, "bigs-torch": run_bigs_torch, "bigs-torch-bf16": run_bigs_torch,
           **dict.fromkeys(COMPILED, run_bigs_torch)}


def peak_key(model: str, dtype: str) -> tuple[str, str]:
    """(framework, dtype) of the matmul peak a model's MFU is measured against."""
    if model in TORCH_BIGS + COMPILED:
        return "torch", "bfloat16" if "bf16" in model else "float32"
    return ("torch" if model == "bert" else "jax"), dtype


def run_case(case: dict) -> dict:
    result = RUNNERS[case["model"]](case)
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    if case["model"] not in ("matmul", "torch-matmul", "probe") and case.get("local_peak_n"):
        # The matmul peak again, right after the case in the same process: on a shared
        # machine the load changes during a run, and this peak saw the same load.
        framework, dtype = peak_key(case["model"], case["dtype"])
        matmul = run_torch_matmul if framework == "torch" else run_matmul
        result["local_peak_gflops"] = matmul({"n": case["local_peak_n"], "repeats": 3, "dtype": dtype})["gflops"]
    return result


def run_case_subprocess(case: dict, timeout: float | None = None, script: str = __file__,
                        environ: dict | None = None) -> dict:
    """`script --case <case as JSON>` in a fresh process (with `environ`); its last stdout line
    as JSON, or {"skipped": why} if it failed or took longer than `timeout` seconds."""
    command = [sys.executable, os.path.abspath(script), "--case", json.dumps(case)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environ)
    except subprocess.TimeoutExpired:
        return {"skipped": f"took more than {timeout:.0f} s"}
    if done.returncode != 0:
        return {"skipped": f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------ main
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048, 8192, 16384])
    parser.add_argument("--modes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    parser.add_argument("--train-max-length", type=int, default=512, help="training step only up to this length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="compute dtype (params stay float32); the matmul peak is measured in it")
    parser.add_argument("--batch", type=int, default=8, help="batch at L <= 512 (1 above)")
    parser.add_argument("--no-bert", action="store_true")
    parser.add_argument("--no-torch-bigs", action="store_true", help="skip PyTorch BiGS (float32 and bfloat16)")
    parser.add_argument("--torch-compile", action="store_true",
                        help="also time PyTorch BiGS under torch.compile, float32 and bfloat16 (inductor; "
                             "compile time as compile s)")
    parser.add_argument("--remat", action="store_true",
                        help="also time BiGS training with remat=True (each layer recomputed in the backward pass)")
    parser.add_argument("--compile-max-length", type=int, default=512,
                        help="torch.compile cases only up to this length (at 16k inductor compiles for minutes)")
    parser.add_argument("--bert-max-length", type=int, default=8192,
                        help="skip BERT above this (16k takes minutes per call on 2 cores)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per case before it is skipped")
    parser.add_argument("--quick", action="store_true", help="tiny model, L = 32 and 64, batch 2, one repeat")
    parser.add_argument("--in-process", action="store_true", help="run cases here (memory is then cumulative)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--no_hugepages", action="store_true", help="do not restart with malloc on huge pages")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return {}

    runner = run_case if args.in_process else (lambda case: run_case_subprocess(case, args.timeout))
    probe = runner({"model": "probe"})
    if "skipped" in probe:
        raise SystemExit(f"bench: jax does not start here ({probe['skipped']})")
    on_gpu = probe["platform"] == "gpu"
    size = TINY if args.quick else BASE
    # A GPU needs larger matmuls to reach its peak than a 2-core CPU.
    peak_sizes = [256] if args.quick else ([4096, 8192] if on_gpu else [2048, 4096])
    lengths = [32, 64] if args.quick else args.lengths
    repeats = 1 if args.quick else args.repeats
    models = ["bigs"]
    has_torch = all(importlib.util.find_spec(name) for name in ("torch", "transformers"))
    if not has_torch:
        print("PyTorch BiGS and BERT skipped: install the bench extra (pip install -e .[bench])")
    if has_torch and not args.no_torch_bigs:
        models += list(TORCH_BIGS) + (list(COMPILED) if args.torch_compile else [])
    if has_torch and not args.no_bert:
        models.append("bert")

    wanted = {peak_key(model, args.dtype) for model in models}
    peaks = {}
    for framework, dtype in sorted(wanted):
        matmul = "torch-matmul" if framework == "torch" else "matmul"
        sizes = {n: runner({"model": matmul, "n": n, "repeats": 2 * repeats, "dtype": dtype})["gflops"]
                 for n in peak_sizes}
        peaks[f"{framework} {dtype}"] = {"sizes": sizes, "peak": max(sizes.values())}
        print(f"matmul peak ({framework} {dtype}): " + ", ".join(f"{n}^3 {g:.0f} GFLOP/s" for n, g in sizes.items()))
    print(f"{probe['device']} ({probe['platform']}), BiGS and BERT in {args.dtype}; PyTorch BiGS in float32 "
          "and bfloat16 (autocast)")

    rows = []
    memory = "dev GB" if on_gpu else "RSS GB"
    header = f"{'model':<15} {'mode':<8} {'L':>6} {'B':>3} {'ms':>9} {'tok/s':>8} {'MFU':>5} {'MFU*':>5} {memory:>6} {'compile s':>9} {'build s':>7}"
    print(header + f"\n(MFU: against the run's peak above for the model's framework and dtype; MFU*: against a {peak_sizes[0]}^3 matmul timed in the "
                   "case's own process right after it)")
    for mode in args.modes:
        for length in lengths:
            if mode == "train" and length > args.train_max_length and not args.quick:
                continue
            batch = 2 if args.quick else (args.batch if length <= 512 else 1)
            for model in models + (["bigs-remat"] if args.remat and mode == "train" else []):
                row = {"model": model, "mode": mode, "length": length, "batch": batch, "dtype": args.dtype}
                if model == "bert" and length > args.bert_max_length:
                    row["skipped"] = f"L > --bert-max-length={args.bert_max_length}"
                elif model in COMPILED and length > args.compile_max_length:
                    row["skipped"] = f"L > --compile-max-length={args.compile_max_length}"
                else:
                    # One call of a long case takes seconds on CPU; a GPU can afford the repeats.
                    row.update(runner({"model": model, "mode": mode, "length": length, "batch": batch,
                                       "size": size, "dtype": args.dtype, "platform": probe["platform"],
                                       "repeats": 1 if length > 4096 and not on_gpu else repeats,
                                       "local_peak_n": peak_sizes[0]}))
                if "seconds" in row:
                    row["tokens_per_s"] = batch * length / row["seconds"]
                    achieved = model_flops(model, mode, size, batch, length) / row["seconds"] / 1e9
                    framework, dtype = peak_key(model, args.dtype)
                    row["mfu"] = achieved / peaks[f"{framework} {dtype}"]["peak"]
                    row["mfu_local"] = achieved / row["local_peak_gflops"]
                    # torch without CUDA on a GPU machine runs BERT on the CPU: RSS is its memory then.
                    row["memory_gb"] = row.get("peak_device_gb") or row["peak_rss_gb"]
                    print(f"{model:<15} {mode:<8} {length:>6} {batch:>3} {row['seconds'] * 1e3:>9.1f} "
                          f"{row['tokens_per_s']:>8.0f} {row['mfu']:>5.2f} {row['mfu_local']:>5.2f} "
                          f"{row['memory_gb']:>6.2f} {row['compile_s']:>9.1f} {row['construct_s']:>7.1f}",
                          flush=True)
                else:
                    print(f"{model:<15} {mode:<8} {length:>6} {batch:>3}  skipped: {row['skipped']}", flush=True)
                rows.append(row)
    result = {"device": probe["device"], "platform": probe["platform"], "dtype": args.dtype,
              "matmul_peak_gflops": peaks, "size": size, "rows": rows, "hugepages": hugepages_on(),
              "note": "medians after one warm-up; each case in a fresh process unless --in-process"}
    save_json(args.json, result)
    return result


if __name__ == "__main__":
    relaunch_with_hugepages()   # malloc on huge pages, as the bigs commands (bigs/runtime.py)
    main()
