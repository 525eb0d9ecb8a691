"""The BiGS layer, fused and token-blocked: the same function as layers.BiGSLayer, faster.

It has the same params (names, shapes, initial distributions), so checkpoints do not care
which layer ran; tests/test_layers.py checks that outputs and gradients agree. What it
changes, and why:

- No flips. The backward branch flip -> causal convolution -> flip equals an anti-causal
  convolution of the unflipped sequence. Each flip is a copy of a [B, L, H] array; without
  them both SSM inputs are read from the same x, in the same order.
- du_forward and du_backward as one matmul. They now read the same x, so their kernels are
  concatenated into one [H, 2H] matmul: x is read once, by one larger GEMM.
- One convolution for both directions. fs4 and bs4 run as ssm.multi_conv on u [B, L, 2, H]
  (one FFT, one batched Toeplitz matmul or one scan), causal for one, anti-causal for the
  other.
- x recomputed after the convolution. x = LN(h) is needed before the convolution (du) and
  after it (dv). The gate v = gelu(dv(x)) is computed after the convolution from
  x = LN(h) recomputed there, so only h and the SSM inputs stay alive through the
  convolution, not x and the [B, L, I] gate; a LayerNorm is cheap.
- Per-token functions, in token blocks. Everything but the convolution works on one token
  at a time: `ssm_inputs` (LayerNorm, du, GELU, pad mask) before it, `mix` (duc, gating, dol,
  dv, do, residual) after it. `_per_token` runs such a function on all B*L tokens at once or
  over blocks of `plan.token_block` tokens, so that on a CPU each dense layer's
  [block, I] output stays in cache instead of a [B*L, I] array going through memory.
  backends.resolve uses blocks in CPU inference only: under a gradient the block loop
  stacks the outputs kept for the backward pass, which costs more than it saves.
  Flax modules cannot be called inside those jax.vmap / lax.map functions, so the layer
  reads its params first (`_DenseParams`, `_LayerNormParams`) and applies them as plain
  functions; the kernels are cast to the compute dtype once per call, not once per block.
- What the backward pass keeps (SAVE_MATMULS, the default remat policy, backends.resolve):
  the outputs of the matmuls and of the convolution (named CONV_OUTPUT); the elementwise
  work between them (GELUs, LayerNorm, gating, pad mask) is recomputed. Stored, those
  intermediates were most of the training memory and, under the layer scan, were copied
  into and out of the stacked per-layer buffers at every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from . import initializers as init
from . import ssm
from .config import BiGSConfig, PadMode
from .layers import S4D, gelu

if TYPE_CHECKING:
    from .backends import Plan

CONV_OUTPUT = "ssm_conv"
SAVE_MATMULS = jax.checkpoint_policies.save_from_both_policies(
    jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    jax.checkpoint_policies.save_only_these_names(CONV_OUTPUT))


class _DenseParams(nn.Module):
    """The params of layers.dense(...) (the same names, shapes and init), unapplied, so that
    several projections of one input can run as one matmul: (kernel [in, out], bias [out])."""

    config: BiGSConfig
    in_features: int
    features: int

    @nn.compact
    def __call__(self):
        kernel = self.param("kernel", init.normal(self.config.initializer_range), (self.in_features, self.features))
        bias = self.param("bias", init.zeros, (self.features,))
        return kernel, bias


class _LayerNormParams(nn.Module):
    """The params of layers.layer_norm(...) (the same names, shapes and init), unapplied:
    (scale [features], bias [features])."""

    features: int

    @nn.compact
    def __call__(self):
        return (self.param("scale", init.ones, (self.features,)),
                self.param("bias", init.zeros, (self.features,)))


def _apply_layer_norm(x, scale, bias, eps, dtype):
    """nn.LayerNorm as a function: float32 statistics, variance as E[x^2] - E[x]^2."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = x32.mean(-1, keepdims=True)
    var = jnp.maximum(0.0, jnp.square(x32).mean(-1, keepdims=True) - jnp.square(mean))
    return ((x - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias).astype(dtype)


def _per_token(fn, block, *arrays):
    """fn of one token's slices, applied to every token of arrays [B, L, ...].

    block > 0 runs it over blocks of at most `block` tokens (a loop of matmuls with
    block rows); 0 runs all B*L tokens at once.
    """
    batch, length = arrays[0].shape[:2]
    tokens = batch * length
    flat = [a.reshape(tokens, *a.shape[2:]) for a in arrays]
    if not block or tokens <= block:
        out = jax.vmap(fn)(*flat)
    else:
        size = -(-tokens // -(-tokens // block))      # equal blocks, as few as possible
        out = jax.lax.map(lambda xs: fn(*xs), flat, batch_size=size)
    return out.reshape(batch, length, *out.shape[1:])


class FastBiGSLayer(nn.Module):
    """One BiGS layer (paper Fig. 2), fused: hidden [B, L, H], mask [B, L] (1 real, 0 pad)
    -> hidden [B, L, H] in `dtype`. The same function and params as layers.BiGSLayer:

        v  = gelu(dv(x))                                    [B, L, I]  gate
        sf = fs4(gelu(du_forward(x)))                       [B, L, H]  causal SSM
        sb = bs4(gelu(du_backward(x)))                      [B, L, H]  anti-causal SSM
        f  = do(gelu(dol(duc_forward(sf) * duc_backward(sb))) * v)   [B, L, H]

    `plan` (backends.Plan) gives the pad mode, the convolution's backend and precision,
    and the token block.
    """

    config: BiGSConfig
    plan: Plan
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, mask):
        cfg, plan = self.config, self.plan
        H, I = cfg.hidden_size, cfg.intermediate_size
        dense = {name: _DenseParams(cfg, n_in, n_out, name=name)()
                 for name, n_in, n_out in (("dv", H, I), ("du_forward", H, H), ("du_backward", H, H),
                                           ("duc_forward", H, H), ("duc_backward", H, H),
                                           ("dol", H, I), ("do", I, H))}
        norm_params = _LayerNormParams(H, name="LayerNorm")()
        dtype = self.dtype

        def norm(h):
            return _apply_layer_norm(h, *norm_params, cfg.layer_norm_eps, dtype)

        def cast(kernel, bias):
            return kernel.astype(dtype), bias.astype(dtype)

        weights = {name: cast(*dense[name]) for name in ("dv", "duc_forward", "duc_backward", "dol", "do")}
        weights["du"] = cast(*(jnp.concatenate(parts, -1) for parts in zip(dense["du_forward"], dense["du_backward"])))

        def linear(x, name):
            kernel, bias = weights[name]
            return jnp.dot(x.astype(dtype), kernel) + bias

        def ssm_inputs(hidden, mask):          # one token: [H], [] -> [2, H]
            x = norm(hidden) if cfg.pre_norm else hidden
            u = gelu(linear(x, "du")).reshape(2, H)
            if plan.pad_mode is PadMode.EXACT:
                # Pads feed nothing into either SSM: each sequence sees only its own tokens.
                u = u * mask.astype(u.dtype)
            return u

        def mix(hidden, s):                    # one token: [H], [2, H] -> [H]
            x = norm(hidden) if cfg.pre_norm else hidden
            mixed = linear(s[0], "duc_forward") * linear(s[1], "duc_backward")
            gate = gelu(linear(x, "dv"))
            update = linear(gelu(linear(mixed, "dol")) * gate, "do")
            return hidden + update if cfg.pre_norm else norm(hidden + update)

        u = _per_token(ssm_inputs, plan.token_block, hidden, mask)       # [B, L, 2, H]
        ssm_params = ssm.stack_directions(S4D(cfg.num_ssm, cfg.scaling, name="fs4").ssm_params(),
                                          S4D(cfg.num_ssm, cfg.scaling, name="bs4").ssm_params())
        s = ssm.multi_conv(u, ssm_params, (False, True), backend=plan.conv_backend, precision=plan.conv_precision)
        s = checkpoint_name(s, CONV_OUTPUT)
        return _per_token(mix, plan.token_block, hidden, s)
