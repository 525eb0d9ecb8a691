"""One `bigs pretrain` training step, timed side by side: the MLM loss's hand-written backward
pass against plain autodiff, and malloc on huge pages against 4 KB pages.

The step is the command's own (`bigs.train.loop.make_train_step` with the MLM loss of
`bigs.train.pretrain.mlm_sums`, AdamW and gradient
clipping from `make_optimizer`, dropout on) on random tokens with `--predictions` masked
positions per sequence, as the shards hold. Each case runs in a fresh process; the cases
alternate over `--rounds`, so a drift in the machine's speed reaches all of them alike.

    loss "fused"      losses.tied_softmax_cross_entropy (what the model uses)
    loss "autodiff"   losses.plain_softmax_cross_entropy, differentiated by jax
    hugepages on/off  GLIBC_TUNABLES=glibc.malloc.hugetlb=1, or BIGS_HUGEPAGES=0 (bigs/runtime.py)

    python benchmarks/pretrain_step.py        # the README's pretraining example: 2 layers, hidden 128
    python benchmarks/pretrain_step.py --layers 4 --hidden 256 --intermediate 512 --num-ssm 32 --batch 131

Prints ms per step (the median of --repeats steps after one warm-up), tokens/s and each
case's time over the first case's, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bigs.runtime import hugepage_environment, without_hugepages

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import run_case_subprocess, save_json  # noqa: E402

LOSSES = ("fused", "autodiff")


def run_case(case: dict) -> dict:
    import jax
    import numpy as np

    from bigs import BiGSConfig, FlaxBiGSForMaskedLM, losses
    from bigs.train import sharding
    from bigs.train.optim import make_optimizer
    from bigs.train.loop import make_train_state, make_train_step
    from bigs.train.pretrain import PretrainArgs, mlm_sums

    if case["loss"] == "autodiff":
        losses.tied_softmax_cross_entropy = losses.plain_softmax_cross_entropy
    batch, length, predictions = case["batch"], case["length"], case["predictions"]
    config = BiGSConfig(vocab_size=case["vocab"], hidden_size=case["hidden"], num_hidden_layers=case["layers"],
                        intermediate_size=case["intermediate"], num_ssm=case["num_ssm"],
                        max_position_embeddings=length)
    model = FlaxBiGSForMaskedLM(config, seed=0, _do_init=False)
    d = PretrainArgs(output_dir="", dataset_path="")
    tx = make_optimizer(d.learning_rate, model.init_shapes(), weight_decay=d.weight_decay, b1=d.adam_beta1,
                        b2=d.adam_beta2, eps=d.adam_epsilon, max_grad_norm=d.max_grad_norm)
    state, _ = make_train_state(model, tx, 0, sharding.make_mesh(1, 1))

    rng = np.random.RandomState(0)
    ids = rng.randint(1, case["vocab"], (1, batch, length)).astype(np.int32)
    labels = np.full(ids.shape, -100, np.int32)
    for row in range(batch):
        where = rng.choice(length, predictions, replace=False)
        labels[0, row, where] = ids[0, row, where]
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids),
              "labels": labels}
    step = jax.jit(make_train_step(lambda params, micro, rng: mlm_sums(model, params, micro, predictions, rng), tx),
                   donate_argnums=0)
    start = time.perf_counter()
    state, metrics = step(state, inputs)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    times = []
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        state, metrics = step(state, inputs)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "first_call_s": first, "loss": float(metrics["loss"])}


def _environment(hugepages: bool) -> dict | None:
    """This process's environment with huge pages on or off; None where they cannot be on."""
    environ = without_hugepages(os.environ)
    return hugepage_environment(environ) if hugepages else {**environ, "BIGS_HUGEPAGES": "0"}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--intermediate", type=int, default=256)
    parser.add_argument("--num-ssm", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--predictions", type=int, default=20, help="masked positions per sequence")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--hugepages", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return {}

    size = {k: getattr(args, k) for k in ("layers", "hidden", "intermediate", "num_ssm", "vocab", "batch",
                                          "length", "predictions", "repeats")}
    cases = []
    for hugepages in args.hugepages:
        environ = _environment(hugepages == "on")
        if environ is None:
            print("huge pages: not available here (bigs/runtime.py says when they are); 'on' skipped")
            continue
        cases += [(loss, hugepages, environ) for loss in args.losses]
    print(f"bigs pretrain step: {args.layers} layers, hidden {args.hidden}, intermediate {args.intermediate}, "
          f"num_ssm {args.num_ssm}, vocab {args.vocab}, batch {args.batch} x L {args.length}, "
          f"{args.predictions} masked per sequence; ms per step, median of {args.repeats}")
    rows = {f"{loss}/hugepages-{hugepages}": [] for loss, hugepages, _ in cases}
    for round_ in range(args.rounds):
        for loss, hugepages, environ in cases:
            result = run_case_subprocess({**size, "loss": loss}, script=__file__, environ=environ)
            if "skipped" in result:
                raise SystemExit(f"loss {loss}, hugepages {hugepages}: {result['skipped']}")
            rows[f"{loss}/hugepages-{hugepages}"].append(result)
            print(f"  round {round_ + 1}  loss {loss:<8} hugepages {hugepages:<3}  {result['seconds'] * 1e3:8.1f} ms",
                  flush=True)
    tokens = args.batch * args.length
    first = None
    print(f"\n{'case':<24} {'ms (each round)':<24} {'tok/s':>8} {'vs first':>8}")
    summary = {}
    for name, results in rows.items():
        seconds = statistics.median(r["seconds"] for r in results)
        first = first or seconds
        summary[name] = {"seconds": seconds, "rounds": [r["seconds"] for r in results],
                         "tokens_per_s": tokens / seconds, "ratio_to_first": seconds / first,
                         "loss": results[-1]["loss"]}
        each = ", ".join(f"{r['seconds'] * 1e3:.0f}" for r in results)
        print(f"{name:<24} {each:<24} {tokens / seconds:>8.0f} {seconds / first:>8.2f}")
    result = {"size": size, "cases": summary}
    save_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
