"""The BiGS layer in paper order: the reference implementation, and its S4D module.

Paper: "Pretraining Without Attention", Wang, Yan, Gu, Rush (2022), Figure 2; the original
code is `BiGS/modeling_flax_bigs.py` (`BiGSLayer`, `S4dLayer`). This layer is
written to be read: one line per equation, batched over [batch, length, hidden]. The fused
layer in bigs/fast_layer.py computes the same function of the same params, faster; the
encoder picks one by `config.layer_impl` (backends.resolve), and tests/test_layers.py checks
that they agree.

Differences from the official implementation: any input length up to
max_position_embeddings; pad_mode "exact" (opt-in) zeroes the SSM inputs at pads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from . import initializers as init
from . import ssm
from .config import BiGSConfig, ConvBackend, PadMode

if TYPE_CHECKING:
    from .backends import Plan


def gelu(x):
    """The layers' GELU: the tanh approximation (flax.linen.gelu, as in the original)."""
    return jax.nn.gelu(x, approximate=True)


def dense(config: BiGSConfig, features: int, dtype: Any, name: str) -> nn.Dense:
    """An nn.Dense with the original's init: kernel N(0, initializer_range^2), bias 0."""
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name,
                    kernel_init=init.normal(config.initializer_range), bias_init=init.zeros)


def layer_norm(config: BiGSConfig, dtype: Any, name: str = "LayerNorm") -> nn.LayerNorm:
    """An nn.LayerNorm with scale 1 and bias 0 at init."""
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=jnp.float32, name=name,
                        scale_init=init.ones, bias_init=init.zeros)


class S4D(nn.Module):
    """One S4D layer: a diagonal SSM of `num_ssm` complex states shared by every channel,
    u [B, L, C] -> y [B, L, C] = K * u + D u, causal along L (bigs/ssm.py has the math).

    Params (the original's `S4dLayer`): A_re, A_im [N] from ssm.init_A(scaling); C [N, 2],
    the real and imaginary parts of a unit-variance complex normal, so N(0, 1/2) each;
    D [1] = 1; log_step [1] ~ U[log 0.01, 0], so dt is log-uniform on [0.01, 1].
    """

    num_ssm: int
    scaling: str = "hippo"
    backend: ConvBackend = ConvBackend.FFT
    precision: str = "float32"

    def setup(self):
        a_re, a_im = ssm.init_A(self.scaling, self.num_ssm)
        self.A_re = self.param("A_re", init.constant(a_re), (self.num_ssm,))
        self.A_im = self.param("A_im", init.constant(a_im), (self.num_ssm,))
        self.C = self.param("C", init.normal(0.5 ** 0.5), (self.num_ssm, 2))
        self.D = self.param("D", init.ones, (1,))
        self.log_step = self.param("log_step", init.uniform(float(np.log(0.01)), 0.0), (1,))

    def ssm_params(self) -> dict:
        """{A_re, A_im, C, D, log_step}, for the functions of bigs/ssm.py."""
        return {"A_re": self.A_re, "A_im": self.A_im, "C": self.C, "D": self.D, "log_step": self.log_step}

    def __call__(self, u):
        return ssm.convolution(u, self.ssm_params(), backend=self.backend, precision=self.precision)


class BiGSLayer(nn.Module):
    """One BiGS layer (paper Fig. 2) in paper order: hidden [B, L, H], mask [B, L] (1 real,
    0 pad) -> hidden [B, L, H] in `dtype`.

    Pre-norm `h + f(LN(h))` or post-norm `LN(h + f(h))` (the same LayerNorm), with
        f(x) = do(gelu(dol(duc_forward(SSM_f(uf)) * flip(duc_backward(SSM_b(ub))))) * v),
        v = gelu(dv(x)), uf = gelu(du_forward(x)), ub = gelu(du_backward(flip(x))).
    `plan` (backends.Plan) gives the pad mode and the convolution's backend and precision.
    """

    config: BiGSConfig
    plan: Plan
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, mask):
        cfg, plan = self.config, self.plan
        H, I = cfg.hidden_size, cfg.intermediate_size

        def linear(features, name):
            return dense(cfg, features, self.dtype, name)

        def s4d(name):
            return S4D(cfg.num_ssm, cfg.scaling, plan.conv_backend, plan.conv_precision, name=name)

        norm = layer_norm(cfg, self.dtype)
        x = norm(hidden) if cfg.pre_norm else hidden
        v = gelu(linear(I, "dv")(x))                                   # [B, L, I], the gate
        uf = gelu(linear(H, "du_forward")(x))                          # [B, L, H]
        ub = gelu(linear(H, "du_backward")(jnp.flip(x, 1)))            # [B, L, H], reversed in L
        if plan.pad_mode is PadMode.EXACT:
            # Pads feed nothing into either SSM: each sequence sees only its own tokens.
            uf = uf * mask[:, :, None].astype(uf.dtype)
            ub = ub * jnp.flip(mask, 1)[:, :, None].astype(ub.dtype)
        sf = s4d("fs4")(uf)                                            # causal: reads the past
        sb = s4d("bs4")(ub)                                            # reversed: reads the future
        mixed = linear(H, "duc_forward")(sf) * jnp.flip(linear(H, "duc_backward")(sb), 1)
        update = linear(H, "do")(gelu(linear(I, "dol")(mixed)) * v)
        return hidden + update if cfg.pre_norm else norm(hidden + update)
