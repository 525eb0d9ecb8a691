"""How a BiGS call runs: every automatic choice, made in one place.

A config (and a call) names its choices with the enums of bigs/config.py: `pad_mode`,
`layer_impl`, `conv_backend`, `conv_precision`, plus `token_block` and `remat`. Several
may be "auto". `resolve` turns them into a `Plan`, with nothing left automatic, for one
input length and platform; the backbone (modeling.BiGSModule) calls it once per call and
hands the plan to the encoder and its layers, which only read it.

    plan = resolve(config, length=512, deterministic=True, platform="cpu")
    plan.conv_backend        # ConvBackend.TOEPLITZ
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from .config import BiGSConfig, ConvBackend, ConvPrecision, LayerImpl, PadMode
from .fast_layer import SAVE_MATMULS

# Longest length at which "auto" uses the Toeplitz matmul: its O(L^2) FLOPs are plain GEMMs
# and beat the FFT and the scan up to here, on CPU and on a GPU (benchmarks/bench_conv.py).
TOEPLITZ_MAX_LENGTH = 512
# Tokens per block of the fast layer's position-wise work when "auto" uses blocks.
TOKEN_BLOCK = 1024

_GPUS = ("gpu", "cuda", "rocm")
# How jax spells each precision (jax.lax.Precision or DotAlgorithmPreset names).
_JAX_PRECISION = {
    ConvPrecision.FLOAT32: "float32",
    ConvPrecision.BF16_3X: "BF16_BF16_F32_X3",
    ConvPrecision.BF16_6X: "BF16_BF16_F32_X6",
    ConvPrecision.TF32_3X: "TF32_TF32_F32_X3",
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one call runs its layers; no field is "auto". Hashable (a Flax module field)."""

    pad_mode: PadMode
    layer_impl: LayerImpl           # REFERENCE or FAST
    conv_backend: ConvBackend       # FFT, TOEPLITZ or SCAN
    conv_precision: str             # the Toeplitz and scan matmuls' precision, as jax spells it
    token_block: int                # tokens per block of the fast layer's per-token work; 0: all at once
    remat_policy: Callable[..., Any]  # what the backward pass keeps of a layer (a jax.checkpoint policy)


def resolve(config: BiGSConfig, length: int, *, deterministic: bool, platform: str | None = None,
            pad_mode: str | None = None, layer_impl: str | None = None, conv_backend: str | None = None,
            remat_policy: Callable[..., Any] | None = None) -> Plan:
    """The plan for inputs of `length` tokens on `platform` (default: jax's default backend).

    The keywords override the config for one call; left None, the config decides.
    conv_precision and token_block come from the config. A value "auto" is decided here.
    `deterministic` is False in training (dropout on), when the layers' outputs are kept for
    a gradient. `remat_policy` (a jax.checkpoint policy) overrides what config.remat says the
    backward pass keeps. Raises ValueError naming a value that is not one of its enum's.
    """
    platform = platform or jax.default_backend()
    on_gpu = platform in _GPUS

    layer_impl = LayerImpl(layer_impl or config.layer_impl)
    if layer_impl is LayerImpl.AUTO:
        # The fused layer computes the same function of the same params, faster (its
        # docstring says how); the reference layer is there to be read and checked against.
        layer_impl = LayerImpl.FAST

    conv_backend = ConvBackend(conv_backend or config.conv_backend)
    if conv_backend is ConvBackend.AUTO:
        # Above TOEPLITZ_MAX_LENGTH the L^2 cost shows: GPUs and TPUs run the FFT well, XLA:CPU
        # runs it slowly next to its GEMMs, so CPUs use the chunked scan (linear in L).
        if length <= TOEPLITZ_MAX_LENGTH:
            conv_backend = ConvBackend.TOEPLITZ
        else:
            conv_backend = ConvBackend.FFT if on_gpu or platform == "tpu" else ConvBackend.SCAN

    conv_precision = ConvPrecision(config.conv_precision)
    if conv_precision is ConvPrecision.AUTO:
        # A CPU has only float32 matmuls. On a GPU, float32 matmuls run on the slow CUDA cores;
        # three bfloat16 passes run on tensor cores, with an error far under that of the TF32
        # dense layers jax runs by default. Ask for "float32" to have true float32 there too.
        conv_precision = ConvPrecision.BF16_3X if on_gpu else ConvPrecision.FLOAT32

    token_block = config.token_block
    if token_block is None:
        # In inference on CPU, blocks keep each dense layer's [block, I] activations in cache
        # instead of [B*L, I] arrays in memory. Under a gradient the block loop stacks the
        # outputs the backward pass keeps, which costs more than it saves; GPUs and TPUs do
        # best with one large matmul.
        token_block = TOKEN_BLOCK if deterministic and platform == "cpu" else 0

    if remat_policy is None:
        remat_policy = jax.checkpoint_policies.nothing_saveable if config.remat else SAVE_MATMULS

    return Plan(pad_mode=PadMode(pad_mode or config.pad_mode), layer_impl=layer_impl, conv_backend=conv_backend,
                conv_precision=_JAX_PRECISION[conv_precision], token_block=token_block, remat_policy=remat_policy)
