"""The S4D state-space model in PyTorch: discretisation, kernel and convolution.

The PyTorch twin of bigs/ssm.py (read that module's docstring for the math): each S4D layer
holds ONE diagonal complex SSM of `num_ssm` states and a scalar skip D, its kernel shared by
every hidden channel, applied as the causal convolution

    y[l] = sum_{k <= l} K[k] u[l - k] + D u[l],    K[k] = Re sum_n C'_n exp(k dt A_n).

Two backends compute it, with the same numbers to float32 rounding (config.ConvBackend):
  FFT       zero-padded torch.fft over 2L, O(L log L): the original's method;
  TOEPLITZ  one matmul with the [L, L] lower-triangular Toeplitz matrix of K: O(L^2) FLOPs
            in one GEMM, faster than the FFT at short lengths.
The Flax model's third backend, SCAN, has no PyTorch version: a config that asks for it
runs the FFT here, which is also linear in memory. `choose_backend` decides "auto"
by length (the same crossover on CPU and GPU until a GPU measurement says otherwise).
The SSM always runs in float32 (autocast off), whatever the dtype of its input.
"""

from __future__ import annotations

import torch

from ..config import ConvBackend

# Longest length at which "auto" uses the Toeplitz matmul. On the 2-core CPU at hidden 768
# it is 2.4-10x faster than the FFT up to 512; at 1024 it wins at batch 8 (1.6x) and loses
# at batch 4 (0.85x), at 2048 it loses (benchmarks/bench_torch_conv.py). The Flax model
# switches at the same length.
TOEPLITZ_MAX_LENGTH = 512
# A_re is clipped so that every mode decays (the original's `min(A_re, -1e-4)`).
_MAX_A_RE = -1e-4


def choose_backend(backend: ConvBackend | str, length: int) -> ConvBackend:
    """FFT or TOEPLITZ for `backend` ("auto", "fft", "toeplitz" or "scan") at `length`.
    Raises ValueError for another value."""
    backend = ConvBackend(backend)
    if backend is ConvBackend.AUTO:
        return ConvBackend.TOEPLITZ if length <= TOEPLITZ_MAX_LENGTH else ConvBackend.FFT
    return ConvBackend.FFT if backend is ConvBackend.SCAN else backend


def discretize(A_re, A_im, C, log_step):
    """Zero-order hold of one S4D layer (A_re, A_im [N], C [N, 2], log_step [1], float32):
    (dtA [N] complex64, C' [N] complex64), with C'_n = C_n (exp(dt A_n) - 1) / A_n."""
    A = torch.complex(torch.clamp(A_re, max=_MAX_A_RE), A_im)
    dtA = torch.exp(log_step) * A
    C_complex = torch.complex(C[:, 0], C[:, 1])
    return dtA, C_complex * (torch.exp(dtA) - 1.0) / A


def kernel(A_re, A_im, C, log_step, length: int) -> torch.Tensor:
    """The convolution kernel K [length] float32: K[k] = Re sum_n C'_n exp(k dtA_n)."""
    dtA, C_bar = discretize(A_re, A_im, C, log_step)
    steps = torch.arange(length, dtype=torch.float32, device=A_re.device)
    powers = torch.exp(dtA[:, None] * steps[None, :])                  # [N, L] complex
    return torch.einsum("n,nl->l", C_bar, powers).real


def toeplitz(K: torch.Tensor) -> torch.Tensor:
    """T [L, L] with T[i, j] = K[i - j] for j <= i, else 0."""
    length = K.shape[0]
    offsets = torch.arange(length, device=K.device)
    lag = offsets[:, None] - offsets[None, :]
    return torch.where(lag >= 0, K[lag.clamp(min=0)], K.new_zeros(()))


def convolution(u: torch.Tensor, params: dict, backend: ConvBackend) -> torch.Tensor:
    """One S4D layer, params {A_re, A_im, C, D, log_step}, on u [B, L, C] -> y [B, L, C]
    in u's dtype: y = K * u + D u along L, computed in float32. `backend`: FFT or TOEPLITZ."""
    with torch.autocast(u.device.type, enabled=False):
        u32 = u.float()
        length = u.shape[1]
        K = kernel(params["A_re"].float(), params["A_im"].float(), params["C"].float(),
                   params["log_step"].float(), length)
        if backend is ConvBackend.FFT:
            n = 2 * length
            spectrum = torch.fft.rfft(u32, n=n, dim=1) * torch.fft.rfft(K, n=n)[None, :, None]
            y = torch.fft.irfft(spectrum, n=n, dim=1)[:, :length]
        elif backend is ConvBackend.TOEPLITZ:
            y = torch.matmul(toeplitz(K), u32)                          # [L, L] @ [B, L, C]
        else:
            raise ValueError(f"conv backend {backend!r} must be FFT or TOEPLITZ here (choose_backend)")
        return (y + params["D"].float() * u32).to(u.dtype)
