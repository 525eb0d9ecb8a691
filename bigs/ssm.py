"""The S4D state-space model: its initial A, discretisation, kernel and convolution.

Each BiGS layer has two S4D layers (forward `fs4` and backward `bs4`). Each holds ONE
diagonal complex SSM with `num_ssm` states and one scalar skip `D`; its kernel is shared by
every hidden channel (golden/README.md, quirk 1). For a length-L input the SSM is the
causal convolution

    y[l] = sum_{k <= l} K[k] u[l - k] + D u[l],
    K[k] = Re sum_n C_n (exp(dt A_n) - 1) / A_n * exp(k dt A_n),           (S4D, ZOH)

with A = min(A_re, -1e-4) + i A_im, dt = exp(log_step) and C = C[:, 0] + i C[:, 1].
S4D: Gu, Gupta, Goel, Re, "On the Parameterization and Initialization of Diagonal State
Space Models" (2022); the original's version is `S4dLayer` in `BiGS/modeling_flax_bigs.py`.

As in the Annotated S4, one small function per step: `init_A` (the initial A, in
bigs/ssm_init.py),
`discretize` (zero-order hold), `kernel` (K), `convolution` (y). The convolution has three
backends (config.ConvBackend), which give the same numbers to float32 rounding:
  FFT       zero-padded FFT, O(L log L): the original's method;
  TOEPLITZ  one matmul with the [L, L] lower-triangular Toeplitz matrix of K: O(L^2)
            FLOPs, but a plain matmul, which is faster than the FFT at short lengths;
  SCAN      the SSM as a recurrence over its num_ssm complex states, in chunks: a
            Toeplitz matmul inside each chunk, the state carried between chunks. Linear
            memory and matmul-bound at any length.
backends.resolve picks one for "auto". `multi_conv` runs several SSMs (BiGS: the forward
and the backward one) on one stacked array, so each backend does one FFT, batched matmul or
scan per layer for both, with the kernels computed once per layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .config import ConvBackend
from .ssm_init import init_A  # the initial A: numpy, shared with the PyTorch model

__all__ = ["init_A", "discretize", "kernel", "convolution", "multi_conv", "stack_directions", "toeplitz", "BACKENDS"]

# The backends that compute a convolution (all but AUTO).
BACKENDS = tuple(backend for backend in ConvBackend if backend is not ConvBackend.AUTO)

# A_re is clipped here so that every mode decays (the original's `min(A_re, -1e-4)`).
_MAX_A_RE = -1e-4
# The kernel's complex products are true float32 whatever jax's default matmul precision
# (on recent NVIDIA GPUs that default is TF32, a 10-bit mantissa). No effect on CPU.
_F32 = jax.lax.Precision.HIGHEST
# Steps per chunk of the SCAN backend. Per element the in-chunk Toeplitz matmul costs
# 2*chunk FLOPs and the state read/write about 8*num_ssm: short chunks balance the two at
# num_ssm 64 (benchmarks/bench_conv.py sweeps the chunk).
SCAN_CHUNK = 64


# -------------------------------------------------------------------------- kernel
def discretize(A_re, A_im, C, log_step):
    """Zero-order-hold discretisation of one S4D layer's params (A_re, A_im [N], C [N, 2],
    log_step [1]): (dtA [N] complex, C' [N] complex) with K[k] = Re sum_n C'_n exp(k dtA_n),
    where C'_n = C_n (exp(dt A_n) - 1) / A_n."""
    A = jnp.minimum(A_re, _MAX_A_RE) + 1j * A_im
    dtA = jnp.exp(log_step) * A
    C_complex = C[:, 0] + 1j * C[:, 1]
    return dtA, C_complex * (jnp.exp(dtA) - 1.0) / A


def kernel(A_re, A_im, C, log_step, length: int) -> jax.Array:
    """The convolution kernel K [length] float32 of one S4D layer, in Vandermonde form:
    K[k] = Re sum_n C'_n exp(k dtA_n) (`discretize`)."""
    dtA, C_bar = discretize(A_re, A_im, C, log_step)
    powers = jnp.exp(dtA[:, None] * jnp.arange(length, dtype=jnp.float32)[None, :])
    return jnp.real(jnp.einsum("n,nl->l", C_bar, powers, precision=_F32)).astype(jnp.float32)


# --------------------------------------------------------------------- convolution
def convolution(u: jax.Array, params: dict, *, reverse: bool = False, backend: ConvBackend | str = ConvBackend.FFT,
                precision: str | jax.lax.Precision = "float32", chunk: int = SCAN_CHUNK) -> jax.Array:
    """One S4D layer, given its params {A_re, A_im, C, D, log_step}, applied to
    u [B, L, C] -> y [B, L, C] (u's dtype): y = K * u + D u along the length axis.

    reverse=True runs it right-to-left (the backward SSM): it equals
    flip(convolution(flip(u))) along the length axis. `backend`, `precision` and `chunk` as
    in `multi_conv`.
    """
    y = multi_conv(u[:, :, None], stack_directions(params), (reverse,), backend=backend, precision=precision,
                   chunk=chunk)
    return y[:, :, 0]


def stack_directions(*params: dict) -> dict:
    """S4D param dicts -> one dict whose leaves have a leading direction axis [D, ...]."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *params)


def multi_conv(u: jax.Array, params: dict, reverse: tuple[bool, ...], *, backend: ConvBackend | str,
               precision: str | jax.lax.Precision = "float32", chunk: int = SCAN_CHUNK) -> jax.Array:
    """D independent S4D layers on one array: u [B, L, D, C] -> y [B, L, D, C], u's dtype.

    `params` holds D stacked S4D layers (`stack_directions`); layer d is causal, or
    anti-causal if reverse[d]. BiGS runs its forward and backward SSM as D=2, so each
    backend does one FFT / one batched matmul / one scan per layer for both directions.
    y = K_d * u[:, :, d] + D_d u[:, :, d], computed in float32 whatever u's dtype.
    `precision`: the Toeplitz and scan matmuls' (a jax.lax.Precision or a jax algorithm
    name such as "BF16_BF16_F32_X3"); `chunk`: steps per chunk of the scan.
    Raises ValueError for a backend other than FFT, TOEPLITZ or SCAN.
    """
    backend = ConvBackend(backend)
    if backend not in BACKENDS:
        raise ValueError(f"conv_backend {backend.value!r} must be resolved to one of "
                         f"{[b.value for b in BACKENDS]} first (backends.resolve)")
    if len(reverse) != u.shape[2]:
        raise ValueError(f"reverse has {len(reverse)} entries but u has {u.shape[2]} SSMs (axis 2)")
    u32 = u.astype(jnp.float32)
    length = u.shape[1]
    if backend is ConvBackend.SCAN:
        y = _conv_chunked_scan(u32, params, reverse, min(chunk, length), precision)
    else:
        K = jax.vmap(kernel, in_axes=(0, 0, 0, 0, None))(
            params["A_re"], params["A_im"], params["C"], params["log_step"], length)   # [D, L]
        y = _conv_fft(u32, K, reverse) if backend is ConvBackend.FFT else _conv_toeplitz(u32, K, reverse, precision)
    skip = params["D"].astype(jnp.float32).reshape(1, 1, -1, 1)
    return (y + skip * u32).astype(u.dtype)


def _conv_fft(u, K, reverse):
    """u [B, L, D, C] float32, K [D, L]: one zero-padded real FFT for all D convolutions.
    An anti-causal convolution is a correlation: multiply by the conjugate spectrum."""
    length = u.shape[1]
    n = 2 * length
    spectrum = jnp.fft.rfft(K, n=n)                                      # [D, F]
    spectrum = jnp.where(jnp.asarray(reverse)[:, None], jnp.conj(spectrum), spectrum)
    y = jnp.fft.irfft(jnp.fft.rfft(u, n=n, axis=1) * spectrum.T[None, :, :, None], n=n, axis=1)
    return y[:, :length]


def toeplitz(K: jax.Array, reverse: bool = False) -> jax.Array:
    """T [L, L] with T[i, j] = K[i - j] for j <= i (its transpose when reverse).

    Built without a gather: row i reversed is the window w[i : i + L] of w = [0]*(L-1) ++ K,
    and L windows of stride 1 are a reshape of w tiled L+1 times. The gradient is then a
    reshape and a sum, not a scatter-add of L^2 values into L slots, which is slow on a GPU.
    The tiled vector holds about 2 L^2 numbers while T is built: little at the lengths
    "auto" uses it for (L <= 512), gigabytes if forced at L in the ten thousands.
    """
    length = K.shape[0]
    w = jnp.concatenate([jnp.zeros((length - 1,), K.dtype), K])                 # [2L-1]
    windows = jnp.tile(w, length + 1)[:length * 2 * length].reshape(length, 2 * length)[:, :length]
    T = windows[:, ::-1]
    return T.T if reverse else T


def _conv_toeplitz(u, K, reverse, precision):
    """u [B, L, D, C] float32, K [D, L]: one batched matmul with D Toeplitz matrices."""
    batch, length, num_dirs, channels = u.shape
    T = jnp.stack([toeplitz(K[d], r) for d, r in enumerate(reverse)])    # [D, L, L]
    # As D plain [L, L] @ [L, B*C] matmuls: XLA:CPU runs a dot with the batch axis first and
    # contiguous operands as a library GEMM, other layouts far slower (benchmarks/bench_conv.py).
    columns = u.transpose(2, 1, 0, 3).reshape(num_dirs, length, batch * channels)
    y = jnp.matmul(T, columns, precision=precision).reshape(num_dirs, length, batch, channels)
    return y.transpose(2, 1, 0, 3)


def _conv_chunked_scan(u, params, reverse, chunk, precision):
    """The SSMs as recurrences over chunks of `chunk` steps; u [B, L, D, C] float32.

    State x_n[t] = exp(dtA_n) x_n[t-1] + u[t], output y[t] = Re sum_n C'_n x_n[t]. Inside a
    chunk the contribution of the chunk's own inputs is a Toeplitz matmul with K[:chunk];
    the state entering the chunk adds Re sum_n C'_n exp((j+1) dtA_n) x_n[start-1] at offset j.
    The complex state is kept as real and imaginary parts so every product is a real matmul,
    and the work runs in the layout [D, length, B*C] so each is a plain batched GEMM.
    Anti-causal SSMs run on the flipped sequence.
    """
    batch, length, num_dirs, channels = u.shape
    columns = u.transpose(2, 1, 0, 3).reshape(num_dirs, length, batch * channels)
    columns = _flip_reversed(columns, reverse)
    pad = (-length) % chunk
    columns = jnp.pad(columns, ((0, 0), (0, pad), (0, 0)))
    num_chunks = columns.shape[1] // chunk
    chunks = columns.reshape(num_dirs, num_chunks, chunk, batch * channels).swapaxes(0, 1)

    dtA, C_bar = jax.vmap(discretize)(params["A_re"], params["A_im"], params["C"], params["log_step"])
    steps = jnp.arange(chunk, dtype=jnp.float32)
    decay = jnp.exp(dtA[:, :, None] * steps)                              # [D, N, T]: exp(j dtA)
    T_in = jax.vmap(toeplitz)(jnp.real(jnp.einsum("dn,dnt->dt", C_bar, decay, precision=_F32)))   # [D, T, T]
    # Output from the carried state: Re sum_n C'_n exp((j+1) dtA_n) x_n, split re/im.
    out_from_state = (C_bar[:, :, None] * decay * jnp.exp(dtA)[:, :, None]).swapaxes(1, 2)  # [D, T, N]
    from_state = jnp.concatenate([out_from_state.real, -out_from_state.imag], axis=2)     # [D, T, 2N]
    # State update from the chunk's inputs: x_n += sum_j exp((T-1-j) dtA_n) u[j].
    state_from_input = jnp.flip(decay, axis=2)                                             # [D, N, T]
    from_input = jnp.concatenate([state_from_input.real, state_from_input.imag], axis=1)  # [D, 2N, T]
    chunk_decay = jnp.exp(dtA * chunk)[:, :, None]                                         # [D, N, 1]
    decay_re, decay_im = chunk_decay.real, chunk_decay.imag
    num_ssm = dtA.shape[1]

    def step(state, u_chunk):                  # state [D, 2N, B*C]: real parts, then imaginary
        y = jnp.matmul(T_in, u_chunk, precision=precision) + jnp.matmul(from_state, state, precision=precision)
        state_re, state_im = state[:, :num_ssm], state[:, num_ssm:]
        rotated = jnp.concatenate([decay_re * state_re - decay_im * state_im,
                                   decay_re * state_im + decay_im * state_re], axis=1)
        return rotated + jnp.matmul(from_input, u_chunk, precision=precision), y

    state0 = jnp.zeros((num_dirs, 2 * num_ssm, batch * channels), jnp.float32)
    _, ys = jax.lax.scan(step, state0, chunks)                 # [chunks, D, T, B*C]
    y = ys.swapaxes(0, 1).reshape(num_dirs, num_chunks * chunk, batch * channels)[:, :length]
    y = _flip_reversed(y, reverse)
    return y.reshape(num_dirs, length, batch, channels).transpose(2, 1, 0, 3)


def _flip_reversed(columns, reverse):
    """Flip the length axis of the SSMs d with reverse[d] (columns [D, L, N])."""
    if not any(reverse):
        return columns
    return jnp.stack([jnp.flip(columns[d], axis=0) if r else columns[d] for d, r in enumerate(reverse)])
