"""Measure the three SSM convolution backends against each other (ssm.multi_conv).

One BiGS layer's sequence mixing at base width: the forward and the backward SSM together,
u [batch, L, 2, hidden]. Prints ms per call and ns per token for fft / toeplitz / scan at
each length, and the scan backend's chunk size sweep; the crossover sets
backends.TOEPLITZ_MAX_LENGTH (docs/performance.md). The Toeplitz and scan matmuls run at
the precision config conv_precision would give a model here (--conv-precision).

    python benchmarks/bench_conv.py                      # L = 128 .. 16384
    python benchmarks/bench_conv.py --lengths 128 1000 --json conv.json
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from bigs import BiGSConfig, ConvPrecision, backends, ssm

BACKENDS = [backend.value for backend in ssm.BACKENDS]


def _params(num_ssm: int, seed: int) -> dict:
    rng = np.random.RandomState(seed)
    a_re, a_im = ssm.init_A("hippo", num_ssm)
    one = lambda: {"A_re": jnp.asarray(a_re), "A_im": jnp.asarray(a_im),  # noqa: E731
                   "C": jnp.asarray(rng.normal(0, 0.5 ** 0.5, (num_ssm, 2)), jnp.float32),
                   "D": jnp.ones((1,)), "log_step": jnp.asarray(rng.uniform(np.log(0.01), 0, (1,)), jnp.float32)}
    return ssm.stack_directions(one(), one())


def time_call(fn, *args, repeats: int = 3) -> float:
    """Median seconds per call after one warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(length: int, batch: int, hidden: int, num_ssm: int, backend: str, chunk: int, precision: str) -> float:
    u = jax.random.normal(jax.random.PRNGKey(0), (batch, length, 2, hidden), jnp.float32)
    fn = jax.jit(lambda u, p: ssm.multi_conv(u, p, (False, True), backend=backend, precision=precision, chunk=chunk))
    return time_call(fn, u, _params(num_ssm, 0))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--num-ssm", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=4096,
                        help="batch = max(1, tokens // L): batch 8 at L=512, 1 from L=4096")
    parser.add_argument("--toeplitz-max", type=int, default=8192, help="skip the O(L^2) backend above this")
    parser.add_argument("--chunks", type=int, nargs="*", default=[64, 128, 256, 512])
    parser.add_argument("--chunk-length", type=int, default=4096)
    parser.add_argument("--conv-precision", default="auto", choices=[p.value for p in ConvPrecision])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    precision = backends.resolve(BiGSConfig(conv_precision=args.conv_precision), 1, deterministic=True).conv_precision

    rows = []
    print(f"SSM convolution, both directions, hidden {args.hidden}, num_ssm {args.num_ssm}, "
          f"{jax.default_backend()}, matmuls {precision}; ms per call (ns per token)")
    print(f"{'L':>6} {'batch':>5} " + " ".join(f"{b:>18}" for b in BACKENDS) + "  fastest")
    for length in args.lengths:
        batch = max(1, args.tokens // length)
        row = {"length": length, "batch": batch}
        for backend in BACKENDS:
            if backend == "toeplitz" and length > args.toeplitz_max:
                continue
            row[backend] = measure(length, batch, args.hidden, args.num_ssm, backend, ssm.SCAN_CHUNK, precision)
        row["fastest"] = min(BACKENDS, key=lambda b: row.get(b, np.inf))
        rows.append(row)
        cells = [f"{row[b] * 1e3:8.1f} ({row[b] / (batch * length) * 1e9:6.0f})" if b in row else f"{'-':>18}"
                 for b in BACKENDS]
        print(f"{length:>6} {batch:>5} " + " ".join(cells) + f"  {row['fastest']}", flush=True)

    chunk_rows = []
    if args.chunks:
        batch = max(1, args.tokens // args.chunk_length)
        print(f"\nscan chunk size at L={args.chunk_length}, batch {batch}: ms per call")
        for chunk in args.chunks:
            seconds = measure(args.chunk_length, batch, args.hidden, args.num_ssm, "scan", chunk, precision)
            chunk_rows.append({"chunk": chunk, "seconds": seconds})
            print(f"  chunk {chunk:>4}: {seconds * 1e3:8.1f}", flush=True)

    result = {"backend": jax.default_backend(), "precision": precision, "hidden": args.hidden, "num_ssm": args.num_ssm,
              "rows": rows, "chunks": chunk_rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
