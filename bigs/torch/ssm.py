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
    """Zero-order hold of one S4D layer (A_re, A_im [N], C [N, 2], log_step [1], float32),
    in real arithmetic (ONNX has no complex numbers): (dtA_re, dtA_im, C'_re, C'_im), each
    [N], the parts of dtA = dt A and of C' = C (exp(dt A) - 1) / A."""
    a, b = torch.clamp(A_re, max=_MAX_A_RE), A_im
    dt = torch.exp(log_step)
    dtA_re, dtA_im = dt * a, dt * b
    growth = torch.exp(dtA_re)
    u, v = growth * torch.cos(dtA_im) - 1.0, growth * torch.sin(dtA_im)        # exp(dt A) - 1
    x, y = C[:, 0] * u - C[:, 1] * v, C[:, 0] * v + C[:, 1] * u                # C (exp(dt A) - 1)
    norm = a * a + b * b
    return dtA_re, dtA_im, (x * a + y * b) / norm, (y * a - x * b) / norm      # ... / A


def kernel(A_re, A_im, C, log_step, length: int) -> torch.Tensor:
    """The convolution kernel K [length] float32:
    K[k] = Re sum_n C'_n exp(k dtA_n) = sum_n exp(k Re dtA_n) (Re C'_n cos(k Im dtA_n) - Im C'_n sin(k Im dtA_n))."""
    dtA_re, dtA_im, C_re, C_im = discretize(A_re, A_im, C, log_step)
    steps = torch.arange(length, dtype=torch.float32, device=A_re.device)[None, :]
    phase = dtA_im[:, None] * steps                                           # [N, L]
    decay = torch.exp(dtA_re[:, None] * steps)
    return (decay * (C_re[:, None] * torch.cos(phase) - C_im[:, None] * torch.sin(phase))).sum(0)


def toeplitz(K: torch.Tensor) -> torch.Tensor:
    """T [L, L] with T[i, j] = K[i - j] for j <= i, else 0."""
    length = K.shape[0]
    offsets = torch.arange(length, device=K.device)
    lag = offsets[:, None] - offsets[None, :]
    return torch.where(lag >= 0, K[lag.clamp(min=0)], K.new_zeros(()))


def _fft_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Causal convolution of u [B, L, C] with K [L] by zero-padded real FFTs over 2L."""
    n = 2 * u.shape[1]
    spectrum = torch.fft.rfft(u, n=n, dim=1) * torch.fft.rfft(K, n=n)[None, :, None]
    return torch.fft.irfft(spectrum, n=n, dim=1)[:, :u.shape[1]]


def convolution(u: torch.Tensor, params: dict, backend: ConvBackend) -> torch.Tensor:
    """One S4D layer, params {A_re, A_im, C, D, log_step}, on u [B, L, C] -> y [B, L, C]
    in u's dtype: y = K * u + D u along L, computed in float32. `backend`: FFT or TOEPLITZ."""
    with torch.autocast(u.device.type, enabled=False):
        u32 = u.float()
        length = u.shape[1]
        K = kernel(params["A_re"].float(), params["A_im"].float(), params["C"].float(),
                   params["log_step"].float(), length)
        if backend is ConvBackend.FFT:
            y = _fft_conv(u32, K)
        elif backend is ConvBackend.TOEPLITZ:
            y = torch.matmul(toeplitz(K), u32)                          # [L, L] @ [B, L, C]
        else:
            raise ValueError(f"conv backend {backend!r} must be FFT or TOEPLITZ here (choose_backend)")
        return (y + params["D"].float() * u32).to(u.dtype)
