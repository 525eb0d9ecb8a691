"""The S4D state-space model: initialisers, the convolution kernel, and the convolution.

Each BiGS layer has two S4D layers (forward `fs4` and backward `bs4`). Each holds ONE
diagonal complex SSM with `num_ssm` states and one scalar skip `D`; its kernel is shared by
every hidden channel (golden/README.md, quirk 1). For a length-L input the SSM is the
causal convolution

    y[l] = sum_{k <= l} K[k] u[l - k] + D u[l],
    K[k] = Re sum_n C_n (exp(dt A_n) - 1) / A_n * exp(k dt A_n),           (S4D, ZOH)

with A = min(A_re, -1e-4) + i A_im, dt = exp(log_step) and C = C[:, 0] + i C[:, 1].

Three ways to compute the same convolution (`conv_backend`):
  "fft"       zero-padded FFT, O(L log L): the original's method;
  "toeplitz"  one matmul with the [L, L] lower-triangular Toeplitz matrix of K: O(L^2)
              FLOPs, but a plain matmul, which is faster than the FFT at short lengths;
  "scan"      the SSM as a recurrence over its num_ssm complex states, in chunks: a
              Toeplitz matmul inside each chunk, the state carried between chunks. Linear
              memory and matmul-bound at any length.
"auto" picks one by length and platform (`choose_backend`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

BACKENDS = ("fft", "toeplitz", "scan")

# A_re is clipped here so that every mode decays (the original's `min(A_re, -1e-4)`).
_MAX_A_RE = -1e-4


# ---------------------------------------------------------------------------- init
@functools.lru_cache(maxsize=None)
def init_A(scaling: str, num_ssm: int) -> tuple[np.ndarray, np.ndarray]:
    """Initial (A_re, A_im), each [num_ssm] float32, for S4D's three initialisations.

    hippo: eigenvalues of the normal part of HiPPO-LegS (S4D-LegS), computed in float32 as
           the original does, so A_re is -0.5000003576 rather than -0.5.
    lin:   A = -1/2 + i pi n                     (S4D-Lin)
    inv:   A = -1/2 + i N/pi (N/(2n+1) - 1)       (S4D-Inv)
    """
    n = np.arange(num_ssm, dtype=np.float32)
    if scaling == "hippo":
        # HiPPO-LegS A = -(tril(p p^T) - diag(n)), p = sqrt(2n+1); its normal part is
        # S = A + P P^T with P = sqrt(n + 1/2): -1/2 on the diagonal plus a skew part
        # whose eigenvalues i*lambda we get from the Hermitian matrix -i * S.
        with jax.ensure_compile_time_eval():  # also when called while tracing an init
            nj = jnp.asarray(n)
            p = jnp.sqrt(1 + 2 * nj)
            legs = -(jnp.tril(p[:, None] * p[None, :]) - jnp.diag(nj))
            low_rank = jnp.sqrt(nj + 0.5)
            normal = legs + low_rank[:, None] * low_rank[None, :]
            a_re = jnp.full((num_ssm,), jnp.mean(jnp.diagonal(normal)))
            a_im = jnp.linalg.eigh(normal * -1j)[0]
            return np.asarray(a_re, np.float32), np.asarray(a_im, np.float32)
    a_re = np.full((num_ssm,), -0.5, np.float32)
    if scaling == "lin":
        return a_re, (np.pi * n).astype(np.float32)
    if scaling == "inv":
        return a_re, (num_ssm / np.pi * (num_ssm / (2 * n + 1) - 1)).astype(np.float32)
    raise ValueError(f"unknown S4D scaling {scaling!r}; expected 'hippo', 'lin' or 'inv'")


# -------------------------------------------------------------------------- kernel
def discretize(A_re, A_im, C, log_step):
    """Zero-order-hold discretisation: (dtA [N] complex, C' [N] complex) with
    K[k] = Re sum_n C'_n exp(k dtA_n)."""
    A = jnp.minimum(A_re, _MAX_A_RE) + 1j * A_im
    dtA = jnp.exp(log_step) * A
    C_complex = C[:, 0] + 1j * C[:, 1]
    return dtA, C_complex * (jnp.exp(dtA) - 1.0) / A


def ssm_kernel(A_re, A_im, C, log_step, length: int) -> jax.Array:
    """The convolution kernel K [length] float32 of one S4D layer (Vandermonde form)."""
    dtA, C_bar = discretize(A_re, A_im, C, log_step)
    powers = jnp.exp(dtA[:, None] * jnp.arange(length, dtype=jnp.float32)[None, :])
    return jnp.real(jnp.einsum("n,nl->l", C_bar, powers)).astype(jnp.float32)


# --------------------------------------------------------------------- convolution
def choose_backend(length: int, platform: str | None = None) -> str:
    """The fastest exact backend for this length on this platform (measured in
    benchmarks/bench_conv.py): the Toeplitz matmul while its L^2 cost is small next to the
    layer's dense matmuls, then the FFT on GPU/TPU and the chunked scan on CPU."""
    platform = platform or jax.default_backend()
    if length <= 512:
        return "toeplitz"
    return "fft" if platform in ("gpu", "cuda", "rocm", "tpu") else "scan"


def causal_conv(u: jax.Array, K: jax.Array, D: jax.Array, *, reverse: bool = False,
                backend: str = "fft") -> jax.Array:
    """y = K * u + D u along the length axis; u [batch, length, channels], K [length].

    reverse=True runs the convolution right-to-left (the backward SSM): it equals
    flip(causal_conv(flip(u))) along the length axis.
    """
    if backend == "fft":
        y = _conv_fft(u, K, reverse)
    elif backend == "toeplitz":
        y = _conv_toeplitz(u, K, reverse)
    elif backend == "scan":
        raise ValueError("the 'scan' backend needs the SSM parameters: use ssm_conv")
    else:
        raise ValueError(f"unknown conv_backend {backend!r}; expected one of {BACKENDS} or 'auto'")
    return (y + D.astype(jnp.float32) * u.astype(jnp.float32)).astype(u.dtype)


def ssm_conv(u: jax.Array, params: dict, *, reverse: bool = False, backend: str = "fft",
             chunk: int = 256) -> jax.Array:
    """Apply one S4D layer, given its params {A_re, A_im, C, D, log_step}, to u [B, L, H]."""
    length = u.shape[1]
    if backend == "scan":
        y = _conv_chunked_scan(u, params, reverse, min(chunk, length))
        return (y + params["D"].astype(jnp.float32) * u.astype(jnp.float32)).astype(u.dtype)
    K = ssm_kernel(params["A_re"], params["A_im"], params["C"], params["log_step"], length)
    return causal_conv(u, K, params["D"], reverse=reverse, backend=backend)


def _conv_fft(u, K, reverse):
    length = u.shape[1]
    u32 = u.astype(jnp.float32)
    if reverse:
        u32 = jnp.flip(u32, axis=1)
    n = 2 * length
    y = jnp.fft.irfft(jnp.fft.rfft(u32, n=n, axis=1) * jnp.fft.rfft(K, n=n)[None, :, None],
                      n=n, axis=1)[:, :length]
    return jnp.flip(y, axis=1) if reverse else y


def toeplitz(K: jax.Array, reverse: bool = False) -> jax.Array:
    """T [L, L] with T[i, j] = K[i - j] for j <= i (its transpose when reverse)."""
    length = K.shape[0]
    lag = jnp.arange(length)[:, None] - jnp.arange(length)[None, :]
    T = jnp.where(lag >= 0, K[jnp.clip(lag, 0, length - 1)], 0.0)
    return T.T if reverse else T


def _conv_toeplitz(u, K, reverse):
    T = toeplitz(K, reverse).astype(u.dtype)
    return jnp.einsum("lm,bmh->blh", T, u, preferred_element_type=jnp.float32)


def _conv_chunked_scan(u, params, reverse, chunk):
    """The SSM as a recurrence over chunks of `chunk` steps.

    State x_n[t] = exp(dtA_n) x_n[t-1] + u[t], output y[t] = Re sum_n C'_n x_n[t]. Inside a
    chunk the contribution of the chunk's own inputs is a Toeplitz matmul with K[:chunk];
    the state entering the chunk adds Re sum_n C'_n exp((j+1) dtA_n) x_n[start-1] at offset j.
    """
    batch, length, channels = u.shape
    u32 = u.astype(jnp.float32)
    if reverse:
        u32 = jnp.flip(u32, axis=1)
    pad = (-length) % chunk
    u32 = jnp.pad(u32, ((0, 0), (0, pad), (0, 0)))
    num_chunks = u32.shape[1] // chunk
    chunks = u32.reshape(batch, num_chunks, chunk, channels).transpose(1, 0, 2, 3)

    dtA, C_bar = discretize(params["A_re"], params["A_im"], params["C"], params["log_step"])
    steps = jnp.arange(chunk, dtype=jnp.float32)
    decay = jnp.exp(dtA[:, None] * steps[None, :])                     # [N, T]: exp(j dtA)
    T_in = toeplitz(jnp.real(jnp.einsum("n,nt->t", C_bar, decay)))      # [T, T]
    # Output from the carried state: Re sum_n C'_n exp((j+1) dtA_n) x_n, split re/im.
    out_from_state = C_bar[:, None] * decay * jnp.exp(dtA)[:, None]     # [N, T]
    # State update from the chunk's inputs: x_n += sum_j exp((T-1-j) dtA_n) u[j].
    state_from_input = jnp.flip(decay, axis=1)                          # [N, T]
    chunk_decay = jnp.exp(dtA * chunk)                                   # [N]

    def step(state, u_chunk):                        # state [B, N, H] complex64
        y = jnp.einsum("tj,bjh->bth", T_in, u_chunk)
        y = y + (jnp.einsum("nt,bnh->bth", out_from_state.real, state.real)
                 - jnp.einsum("nt,bnh->bth", out_from_state.imag, state.imag))
        new = chunk_decay[None, :, None] * state + (
            jnp.einsum("nt,bth->bnh", state_from_input.real, u_chunk)
            + 1j * jnp.einsum("nt,bth->bnh", state_from_input.imag, u_chunk))
        return new, y

    state0 = jnp.zeros((batch, dtA.shape[0], channels), jnp.complex64)
    _, ys = jax.lax.scan(step, state0, chunks)
    y = ys.transpose(1, 0, 2, 3).reshape(batch, num_chunks * chunk, channels)[:, :length]
    return jnp.flip(y, axis=1) if reverse else y

