"""Measure the PyTorch SSM convolution backends (bigs/torch/ssm.py) against each other.

One S4D layer at base width, u [batch, L, hidden] float32: ms per call for the FFT and the
Toeplitz matmul at each length, in one run. The crossover sets
bigs.torch.ssm.TOEPLITZ_MAX_LENGTH. Prints a table and writes JSON.

    python benchmarks/bench_torch_conv.py                          # L = 64 .. 2048
    python benchmarks/bench_torch_conv.py --lengths 128 1000 --json torch_conv.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from bigs.config import ConvBackend
from bigs.ssm_init import init_A
from bigs.torch import ssm


def time_call(fn, repeats: int) -> float:
    """Median seconds per call after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--num-ssm", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results_torch_conv.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    a_re, a_im = init_A("hippo", args.num_ssm)
    params = {"A_re": torch.tensor(a_re), "A_im": torch.tensor(a_im), "C": torch.randn(args.num_ssm, 2) * 0.5 ** 0.5,
              "D": torch.ones(1), "log_step": torch.full((1,), math.log(0.1))}
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, hidden {args.hidden}")
    print(f"{'L':>6} {'fft ms':>9} {'toeplitz ms':>12} {'fft/toeplitz':>13}")
    for length in args.lengths:
        u = torch.randn(args.batch, length, args.hidden)
        row = {"length": length}
        with torch.no_grad():
            for backend in (ConvBackend.FFT, ConvBackend.TOEPLITZ):
                row[backend.value] = 1e3 * time_call(lambda b=backend: ssm.convolution(u, params, b), args.repeats)
        rows.append(row)
        print(f"{length:>6} {row['fft']:>9.2f} {row['toeplitz']:>12.2f} {row['fft'] / row['toeplitz']:>13.2f}")
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch,
                   "hidden": args.hidden, "num_ssm": args.num_ssm, "ms": rows}, f, indent=1)


if __name__ == "__main__":
    main()
