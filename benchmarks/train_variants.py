"""Variants of one BiGS MLM training step, timed in one process: what each part costs.

Made for a GPU, where a step takes milliseconds (docs/performance.md, "On a GPU"). Each
variant changes one thing, through a config key or a call argument of the model:

    conv precision   config conv_precision: "highest" (float32), "bf16x6", "tf32x3"
                     (the default is "auto": float32 on CPU, bf16_3x on a GPU)
    backend          config conv_backend: "fft", "scan" (the default is "auto")
    policy           what the backward pass keeps, the call's remat_policy: "matmuls"
                     (the default, fast_layer.SAVE_MATMULS), "dots" (matmul outputs only)
    mode             "train" (step with AdamW), "grad" (value_and_grad only), "forward"
    token block      config token_block: "token-blocks" trains with blocks of 1024 tokens,
                     "forward-whole" runs the forward with all tokens at once (by default
                     the forward uses blocks on CPU and the training step does not)

    python benchmarks/train_variants.py                          # base size, bf16, B32, L512
    python benchmarks/train_variants.py --conv-errors --variants base highest
    python benchmarks/train_variants.py --tiny --variants base   # a seconds-long CPU check
    python benchmarks/train_variants.py --dtype float32 --batch 1 --length 16384 \
        --variants forward forward-whole                        # what token blocks gain on CPU

--conv-errors first prints each precision x backend's error against a float64 numpy
convolution (L=512, batch 8, hidden 768). Prints one line per variant and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from bigs import BiGSConfig, FlaxBiGSForMaskedLM, FlaxBiGSModel, fast_layer, ssm
from bigs.runtime import hugepages_on, relaunch_with_hugepages

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import BASE, TINY, _timed, bigs_program, model_flops, save_json  # noqa: E402

# The convolution matmuls' precisions compared by --conv-errors, as jax spells them.
PRECISIONS = {"highest": jax.lax.Precision.HIGHEST, "bf16x3": "BF16_BF16_F32_X3", "bf16x6": "BF16_BF16_F32_X6",
              "tf32x3": "TF32_TF32_F32_X3", "default": jax.lax.Precision.DEFAULT}
POLICIES = {"matmuls": fast_layer.SAVE_MATMULS, "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}
VARIANTS = {
    "base": {},
    "highest": {"conv_precision": "float32"},
    "bf16x6": {"conv_precision": "bf16_6x"},
    "tf32x3": {"conv_precision": "tf32_3x"},
    "fft": {"conv_backend": "fft"},
    "scan": {"conv_backend": "scan"},
    "policy-dots": {"policy": "dots"},
    "grad-only": {"mode": "grad"},
    "forward": {"mode": "forward"},
    "token-blocks": {"token_block": 1024},
    "forward-whole": {"mode": "forward", "token_block": 0},
}


def conv_errors(length=512, batch=8, hidden=768, num_ssm=64):
    """Each precision x backend against a float64 numpy FFT convolution."""
    rng = np.random.RandomState(0)
    a_re, a_im = ssm.init_A("hippo", num_ssm)
    one = lambda: {"A_re": jnp.asarray(a_re), "A_im": jnp.asarray(a_im),  # noqa: E731
                   "C": jnp.asarray(rng.normal(0, 0.7, (num_ssm, 2)), jnp.float32), "D": jnp.ones((1,)),
                   "log_step": jnp.asarray(rng.uniform(np.log(0.01), 0, (1,)), jnp.float32)}
    params = ssm.stack_directions(one(), one())
    u = jnp.asarray(rng.normal(size=(batch, length, 2, hidden)), jnp.float32)
    K = np.asarray(jax.vmap(ssm.kernel, in_axes=(0, 0, 0, 0, None))(
        params["A_re"], params["A_im"], params["C"], params["log_step"], length), np.float64)
    u64, n = np.asarray(u, np.float64), 2 * length
    want = np.empty_like(u64)
    for d, reverse in enumerate((False, True)):
        x = u64[:, ::-1, d] if reverse else u64[:, :, d]
        y = np.fft.irfft(np.fft.rfft(x, n=n, axis=1) * np.fft.rfft(K[d], n=n)[None, :, None], n=n, axis=1)[:, :length]
        want[:, :, d] = (y[:, ::-1] if reverse else y) + u64[:, :, d]
    rows = {}
    for name, precision in PRECISIONS.items():
        for backend in ssm.BACKENDS:
            try:
                fn = jax.jit(lambda u, p, backend=backend, precision=precision: ssm.multi_conv(
                    u, p, (False, True), backend=backend, precision=precision))
                got = np.asarray(fn(u, params), np.float64)
                start = time.perf_counter()
                for _ in range(20):
                    out = fn(u, params)
                jax.block_until_ready(out)
                ms = (time.perf_counter() - start) / 20 * 1e3
                rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
                key = f"{name}/{backend.value}"
                rows[key] = {"max_abs": float(np.abs(got - want).max()), "rel": rel, "ms": ms}
                print(f"conv {name:<8} {backend.value:<8} max abs {rows[key]['max_abs']:.2e}  "
                      f"relative {rel:.2e}  {ms:.3f} ms", flush=True)
            except Exception as error:  # an algorithm this platform lacks (CPU: tf32x3)
                print(f"conv {name:<8} {backend.value:<8} not available here: {str(error)[:100]}", flush=True)
    return rows


def run_variant(size, batch, length, dtype, repeats, policy="matmuls", mode="train", **config_keys):
    config = BiGSConfig(**size, max_position_embeddings=length, hidden_dropout_prob=0.0, **config_keys)
    model = (FlaxBiGSModel if mode == "forward" else FlaxBiGSForMaskedLM)(config, dtype=dtype)
    call, compile_s = bigs_program(model, mode, batch, length, remat_policy=POLICIES[policy])
    call()
    seconds = _timed(call, repeats)
    # "grad" does the train step's FLOPs less the optimiser's (which are not counted).
    flops = model_flops("bigs", "forward" if mode == "forward" else "train", size, batch, length)
    jax.clear_caches()
    return {"ms": seconds * 1e3, "tflops": flops / seconds / 1e12, "compile_s": compile_s}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--conv-errors", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="tiny model, batch 2, L=64 (checks the script)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--no_hugepages", action="store_true", help="do not restart with malloc on huge pages")
    args = parser.parse_args(argv)
    size, batch, length = (TINY, 2, 64) if args.tiny else (BASE, args.batch, args.length)
    result = {"device": jax.devices()[0].device_kind, "dtype": args.dtype, "batch": batch, "length": length,
              "hugepages": hugepages_on(),
              "conv_errors": conv_errors(*((64, 1, 8, 16) if args.tiny else ())) if args.conv_errors else {},
              "variants": {}}
    for name in args.variants:
        row = run_variant(size, batch, length, args.dtype, 1 if args.tiny else args.repeats, **VARIANTS[name])
        result["variants"][name] = row
        print(f"{name:<15} B{batch} L{length} {args.dtype}: {row['ms']:8.2f} ms  {row['tflops']:7.1f} TFLOP/s  "
              f"compile {row['compile_s']:.1f} s", flush=True)
    save_json(args.json, result)
    return result


if __name__ == "__main__":
    relaunch_with_hugepages()   # malloc on huge pages, as the bigs commands (bigs/runtime.py)
    main()
