"""The BiGS layer in PyTorch, in paper order, and its S4D module.

The PyTorch twin of bigs/layers.py: the same modules, parameter names, shapes and
equations, line for line, so the two can be read side by side. Paper: "Pretraining Without
Attention", Wang, Yan, Gu, Rush (2022), Figure 2; the original code is
`BiGS/modeling_flax_bigs.py` (`BiGSLayer`, `S4dLayer`).

Differences from the original's PyTorch port (`BiGS/modeling_bigs.py`, shared/SPEC.md
point 5), all fixed here: it honours `pre_norm`, uses the tanh GELU in the layers as the
Flax model does, and names its parameters as the Flax checkpoints do, so they load.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import BiGSConfig, ConvBackend, PadMode
from ..ssm_init import init_A
from . import ssm


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The layers' GELU: the tanh approximation (flax.linen.gelu, as in the original)."""
    return nn.functional.gelu(x, approximate="tanh")


def dense(config: BiGSConfig, in_features: int, out_features: int) -> nn.Linear:
    """An nn.Linear (weight [out, in]); BiGSPreTrainedModel._init_weights gives it the
    original's init: weight N(0, initializer_range^2), bias 0."""
    return nn.Linear(in_features, out_features)


def layer_norm(config: BiGSConfig) -> nn.LayerNorm:
    """LayerNorm over hidden_size with the config's epsilon (layer_norm_eps)."""
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class S4D(nn.Module):
    """One S4D layer: a diagonal SSM of `num_ssm` complex states shared by every channel,
    u [B, L, C] -> y [B, L, C] = K * u + D u, causal along L (bigs/torch/ssm.py).

    Params (the original's `S4dLayer`): A_re, A_im [N]; C [N, 2], the real and imaginary
    parts of a unit-variance complex normal; D [1]; log_step [1] (`reset_parameters`).
    """

    def __init__(self, num_ssm: int, scaling: str = "hippo", precision: str = "auto"):
        super().__init__()
        self.scaling = scaling
        self.precision = precision          # config.conv_precision (bigs/torch/ssm.convolution)
        self.A_re = nn.Parameter(torch.empty(num_ssm))
        self.A_im = nn.Parameter(torch.empty(num_ssm))
        self.C = nn.Parameter(torch.empty(num_ssm, 2))
        self.D = nn.Parameter(torch.empty(1))
        self.log_step = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The original's init: A from ssm_init.init_A(scaling); C N(0, 1/2) per part;
        D = 1; log_step ~ U[log 0.01, 0], so dt is log-uniform on [0.01, 1]."""
        a_re, a_im = init_A(self.scaling, self.A_re.shape[0])
        self.A_re.copy_(torch.from_numpy(a_re.copy()))
        self.A_im.copy_(torch.from_numpy(a_im.copy()))
        self.C.normal_(0.0, 0.5 ** 0.5)
        self.D.fill_(1.0)
        self.log_step.uniform_(math.log(0.01), 0.0)

    def ssm_params(self) -> dict:
        """{A_re, A_im, C, D, log_step}, for the functions of bigs/torch/ssm.py."""
        return {"A_re": self.A_re, "A_im": self.A_im, "C": self.C, "D": self.D, "log_step": self.log_step}

    def forward(self, u: torch.Tensor, backend: ConvBackend) -> torch.Tensor:
        return ssm.convolution(u, self.ssm_params(), backend, self.precision)


class BiGSLayer(nn.Module):
    """One BiGS layer (paper Fig. 2) in paper order: hidden [B, L, H], mask [B, L] (1 real,
    0 pad) -> hidden [B, L, H].

    Pre-norm `h + f(LN(h))` or post-norm `LN(h + f(h))` (the same LayerNorm), with
        f(x) = do(gelu(dol(duc_forward(SSM_f(uf)) * flip(duc_backward(SSM_b(ub))))) * v),
        v = gelu(dv(x)), uf = gelu(du_forward(x)), ub = gelu(du_backward(flip(x))).
    `pad_mode` EXACT zeroes the SSM inputs at pads; `backend` is FFT, TOEPLITZ or SCAN.
    After the SSMs everything is position-wise (`gated_update`); with `token_block` > 0 it
    runs over blocks of that many tokens, so its [tokens, I] intermediates stay small and in
    cache (the Flax fast layer's trick; docs/torch.md has the measurements).
    """

    def __init__(self, config: BiGSConfig):
        super().__init__()
        H, I = config.hidden_size, config.intermediate_size
        self.pre_norm = config.pre_norm
        self.LayerNorm = layer_norm(config)
        self.dv = dense(config, H, I)
        self.du_forward = dense(config, H, H)
        self.du_backward = dense(config, H, H)
        self.fs4 = S4D(config.num_ssm, config.scaling, config.conv_precision)
        self.bs4 = S4D(config.num_ssm, config.scaling, config.conv_precision)
        self.duc_forward = dense(config, H, H)
        self.duc_backward = dense(config, H, H)
        self.dol = dense(config, H, I)
        self.do = dense(config, I, H)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, pad_mode: PadMode,
                backend: ConvBackend, token_block: int = 0) -> torch.Tensor:
        x = self.LayerNorm(hidden) if self.pre_norm else hidden
        uf = gelu(self.du_forward(x))                                  # [B, L, H]
        ub = gelu(self.du_backward(torch.flip(x, (1,))))               # [B, L, H], reversed in L
        if pad_mode is PadMode.EXACT:
            # Pads feed nothing into either SSM: each sequence sees only its own tokens.
            uf = uf * mask[:, :, None].to(uf.dtype)
            ub = ub * torch.flip(mask, (1,))[:, :, None].to(ub.dtype)
        sf = self.fs4(uf, backend)                                     # causal: reads the past
        sb = torch.flip(self.bs4(ub, backend), (1,))                   # reversed: reads the future
        if token_block <= 0 or token_block >= x.shape[0] * x.shape[1]:
            update = self.gated_update(x, sf, sb)
        else:
            flat = [t.reshape(-1, t.shape[-1]) for t in (x, sf, sb)]
            update = torch.cat([self.gated_update(*(t[start:start + token_block] for t in flat))
                                for start in range(0, flat[0].shape[0], token_block)]).view(hidden.shape)
        return hidden + update if self.pre_norm else self.LayerNorm(hidden + update)

    def gated_update(self, x: torch.Tensor, sf: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
        """The position-wise rest of f: do(gelu(dol(duc_forward(sf) * duc_backward(sb))) * v),
        v = gelu(dv(x)); x, sf, sb [..., H] (sb already flipped back) -> [..., H]."""
        v = gelu(self.dv(x))                                           # [..., I], the gate
        mixed = self.duc_forward(sf) * self.duc_backward(sb)
        return self.do(gelu(self.dol(mixed)) * v)
