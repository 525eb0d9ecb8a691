"""The S4D state-space model in PyTorch: discretisation, kernel and convolution.

The PyTorch twin of bigs/ssm.py (read that module's docstring for the math): each S4D layer
holds ONE diagonal complex SSM of `num_ssm` states and a scalar skip D, its kernel shared by
every hidden channel, applied as the causal convolution

    y[l] = sum_{k <= l} K[k] u[l - k] + D u[l],    K[k] = Re sum_n C'_n exp(k dt A_n).

Three backends compute it, with the same numbers to float32 rounding (config.ConvBackend),
as in the Flax model:
  FFT       zero-padded torch.fft over 2L, O(L log L): the original's method;
  TOEPLITZ  one matmul with the [L, L] lower-triangular Toeplitz matrix of K: O(L^2) FLOPs
            in one GEMM, faster than the FFT at short lengths;
  SCAN      the SSM as a recurrence over chunks of SCAN_CHUNK steps: a Toeplitz matmul inside
            each chunk, the num_ssm complex states carried between chunks (real and imaginary
            parts, so every product is a real matmul). Linear in L, matmul-bound.
`choose_backend` decides "auto" by length and device, as bigs/backends.py does for Flax.
The kernel, the FFT, the recurrence and the skip D u are float32 whatever the input's dtype;
`convolution` says when the matmuls take bfloat16 operands.
"""

from __future__ import annotations

import torch

from ..config import ConvBackend

# Longest length at which "auto" uses the Toeplitz matmul. On the 2-core CPU at hidden 768
# it is 2.4-10x faster than the FFT up to 512; at 1024 it wins at batch 8 (1.6x) and loses
# at batch 4 (0.85x), at 2048 it loses (benchmarks/bench_torch_conv.py). Above it a CPU runs
# the chunked scan, a GPU the FFT, as in the Flax model (bigs/backends.py).
TOEPLITZ_MAX_LENGTH = 512
# Steps per chunk of the SCAN backend: per element the in-chunk Toeplitz matmul costs
# 2*chunk FLOPs and the state's two matmuls 8*num_ssm.
SCAN_CHUNK = 256
# A_re is clipped so that every mode decays (the original's `min(A_re, -1e-4)`).
_MAX_A_RE = -1e-4


def choose_backend(backend: ConvBackend | str, length: int, device: torch.device | str = "cpu") -> ConvBackend:
    """FFT, TOEPLITZ or SCAN for `backend` ("auto", "fft", "toeplitz" or "scan") at `length`
    on `device`. Raises ValueError for another value."""
    backend = ConvBackend(backend)
    if backend is ConvBackend.AUTO:
        if length <= TOEPLITZ_MAX_LENGTH:
            return ConvBackend.TOEPLITZ
        return ConvBackend.SCAN if torch.device(device).type == "cpu" else ConvBackend.FFT
    return backend


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


def _scan_conv(u: torch.Tensor, params: dict, chunk: int, matmul_dtype: torch.dtype) -> torch.Tensor:
    """Causal S4D convolution of u [B, L, C] (float32 result) as a recurrence over chunks of `chunk`
    steps (the twin of bigs/ssm.py's _conv_chunked_scan, in real arithmetic).

    State x_n[t] = exp(dtA_n) x_n[t-1] + u[t], output y[t] = Re sum_n C'_n x_n[t]. A chunk's
    own inputs reach its outputs through the Toeplitz matrix of K[:chunk]; the state entering
    chunk c adds Re sum_n C'_n exp((j+1) dtA_n) x_n at offset j. The three matmuls run for all
    chunks at once (operands in `matmul_dtype`, float32 accumulation); only the state's
    rotation from chunk to chunk, exp(chunk dtA), is a loop, in float32.
    """
    batch, length, channels = u.shape
    chunk = min(chunk, length)
    pad = (-length) % chunk
    columns = u.to(matmul_dtype).permute(1, 0, 2).reshape(length, batch * channels)     # a view when B is 1
    if pad:
        columns = torch.nn.functional.pad(columns, (0, 0, 0, pad))
    chunks = columns.reshape(-1, chunk, batch * channels)                        # [c, T, N]

    dtA_re, dtA_im, C_re, C_im = discretize(params["A_re"], params["A_im"], params["C"], params["log_step"])
    steps = torch.arange(chunk + 1, dtype=torch.float32, device=u.device)[:, None]   # [T+1, 1]
    growth, phase = torch.exp(steps * dtA_re), steps * dtA_im                   # exp(j dtA): [T+1, Nssm]
    power_re, power_im = growth * torch.cos(phase), growth * torch.sin(phase)
    # y from the carried state x = x_re + i x_im: Re(G x) with G[j, n] = C'_n exp((j+1) dtA_n)
    g_re = C_re * power_re[1:] - C_im * power_im[1:]
    g_im = C_re * power_im[1:] + C_im * power_re[1:]
    from_state = torch.cat([g_re, -g_im], dim=1).to(matmul_dtype)              # [T, 2 Nssm]
    # x gains sum_j exp((T-1-j) dtA) u[j] from a chunk's inputs
    into_state = torch.cat([power_re[:chunk].flip(0), power_im[:chunk].flip(0)], dim=1).T.to(matmul_dtype)
    # K[j] = Re sum_n C'_n exp(j dtA_n) for j < chunk: `kernel`, from the powers already here
    within = toeplitz((C_re * power_re[:chunk] - C_im * power_im[:chunk]).sum(1))
    y = torch.matmul(within.to(matmul_dtype), chunks).float()                   # [c, T, N]
    gains = torch.matmul(into_state, chunks).float()                            # [c, 2 Nssm, N]
    num_ssm = dtA_re.shape[0]
    rotate_re, rotate_im = power_re[chunk][:, None], power_im[chunk][:, None]    # exp(T dtA): [Nssm, 1]
    state = torch.zeros_like(gains[0])
    entering = []
    for gain in gains:                       # x_c = exp(T dtA) x_{c-1} + gain_c
        entering.append(state)
        x_re, x_im = state[:num_ssm], state[num_ssm:]
        state = torch.cat([rotate_re * x_re - rotate_im * x_im, rotate_re * x_im + rotate_im * x_re]) + gain
    y = y + torch.matmul(from_state, torch.stack(entering).to(matmul_dtype)).float()
    return y.reshape(-1, batch, channels)[:length].permute(1, 0, 2)


def convolution(u: torch.Tensor, params: dict, backend: ConvBackend, precision: str = "auto") -> torch.Tensor:
    """One S4D layer, params {A_re, A_im, C, D, log_step}, on u [B, L, C] -> y [B, L, C]
    in u's dtype: y = K * u + D u along L. `backend`: FFT, TOEPLITZ or SCAN.

    The matmuls of TOEPLITZ and SCAN are float32, except in bfloat16 runs (u in bfloat16, or
    autocast to bfloat16) with `precision` "auto": then they take bfloat16 operands with
    float32 accumulation, about twice as fast on a CPU with bfloat16 matmuls; docs/torch.md
    gives the error. precision "float32" (or any other value of config.conv_precision)
    keeps them float32. Raises ValueError for another backend."""
    device = u.device.type
    low = precision == "auto" and (
        u.dtype == torch.bfloat16
        or (torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16))
    matmul_dtype = torch.bfloat16 if low else torch.float32
    with torch.autocast(device, enabled=False):
        params = {name: value.float() for name, value in params.items()}
        if backend is ConvBackend.FFT:
            K = kernel(params["A_re"], params["A_im"], params["C"], params["log_step"], u.shape[1])
            y = _fft_conv(u.float(), K)
        elif backend is ConvBackend.TOEPLITZ:
            K = kernel(params["A_re"], params["A_im"], params["C"], params["log_step"], u.shape[1])
            y = torch.matmul(toeplitz(K).to(matmul_dtype), u.to(matmul_dtype)).float()   # [L, L] @ [B, L, C]
        elif backend is ConvBackend.SCAN:
            y = _scan_conv(u, params, SCAN_CHUNK, matmul_dtype)
        else:
            raise ValueError(f"conv backend {backend!r} must be FFT, TOEPLITZ or SCAN here (choose_backend)")
        return torch.addcmul(y, params["D"], u).to(u.dtype)       # y + D u in float32, cast once
