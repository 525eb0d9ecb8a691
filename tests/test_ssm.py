"""The S4D kernel and the three convolution backends (bigs/ssm.py).

As in the Annotated S4: the convolution view (FFT, Toeplitz) and the recurrent view (the
chunked scan, and a step-by-step Python RNN) must give the same outputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigs import BiGSConfig, backends, ssm

# float32: every backend computes in float32; the FFT's rounding grows slowly with length.
F32_TOL = 1e-5
# bfloat16 inputs are converted to float32 for the convolution and the result rounded back
# to bfloat16 (8 significant bits), so two backends differ by at most about one bf16 ulp.
BF16_TOL = 2.0 ** -7


def make_params(num_ssm=8, seed=0, scaling="hippo"):
    rng = np.random.RandomState(seed)
    a_re, a_im = ssm.init_A(scaling, num_ssm)
    return {"A_re": jnp.asarray(a_re + 0.05 * rng.randn(num_ssm), jnp.float32),
            "A_im": jnp.asarray(a_im),
            "C": jnp.asarray(rng.normal(0, 0.5 ** 0.5, (num_ssm, 2)), jnp.float32),
            "D": jnp.asarray(1 + 0.1 * rng.randn(1), jnp.float32),
            "log_step": jnp.asarray(rng.uniform(np.log(0.01), 0, (1,)), jnp.float32)}


def rnn_reference(u, params, reverse=False):
    """The SSM stepped one position at a time in float64 numpy: u [B, L, C]."""
    u = np.asarray(u, np.float64)
    if reverse:
        u = u[:, ::-1]
    dtA, C_bar = (np.asarray(a, np.complex128) for a in ssm.discretize(**{k: params[k] for k in ("A_re", "A_im", "C", "log_step")}))
    state = np.zeros((u.shape[0], dtA.shape[0], u.shape[2]), np.complex128)
    ys = []
    for t in range(u.shape[1]):
        state = np.exp(dtA)[None, :, None] * state + u[:, t][:, None, :]
        ys.append(np.real(np.einsum("n,bnc->bc", C_bar, state)))
    y = np.stack(ys, axis=1) + float(params["D"][0]) * u
    return y[:, ::-1] if reverse else y


def scale(y):
    return max(1.0, float(np.max(np.abs(np.asarray(y, np.float64)))))


def test_kernel_is_the_s4d_formula():
    params = make_params()
    length = 50
    K = np.asarray(ssm.kernel(params["A_re"], params["A_im"], params["C"], params["log_step"], length))
    A = np.minimum(np.asarray(params["A_re"], np.float64), -1e-4) + 1j * np.asarray(params["A_im"], np.float64)
    dt = np.exp(float(params["log_step"][0]))
    C = np.asarray(params["C"][:, 0], np.float64) + 1j * np.asarray(params["C"][:, 1], np.float64)
    expected = np.real(np.einsum("n,nl->l", C * (np.exp(dt * A) - 1) / A,
                                 np.exp(dt * A[:, None] * np.arange(length)[None, :])))
    np.testing.assert_allclose(K, expected, atol=1e-5 * scale(expected))


@pytest.mark.parametrize("length", [1, 7, 128, 257, 1000])
@pytest.mark.parametrize("reverse", [False, True])
def test_backends_agree_float32(length, reverse):
    params = make_params(seed=length)
    u = jax.random.normal(jax.random.PRNGKey(length), (2, length, 3), jnp.float32)
    # chunk 64: lengths 1, 7, 257 and 1000 are not multiples of it; 128 is.
    outs = {b: np.asarray(ssm.convolution(u, params, reverse=reverse, backend=b, chunk=64)) for b in ssm.BACKENDS}
    reference = rnn_reference(u, params, reverse) if length <= 257 else outs["fft"]
    for backend, y in outs.items():
        assert y.dtype == np.float32
        err = np.max(np.abs(y - reference)) / scale(reference)
        assert err < F32_TOL, f"{backend} at L={length}: relative error {err:.2e}"


@pytest.mark.parametrize("length", [1, 300])
@pytest.mark.parametrize("reverse", [False, True])
def test_backends_agree_bfloat16(length, reverse):
    params = make_params(seed=1)
    u = jax.random.normal(jax.random.PRNGKey(0), (2, length, 3), jnp.float32).astype(jnp.bfloat16)
    reference = rnn_reference(np.asarray(u.astype(jnp.float32)), params, reverse)
    for backend in ssm.BACKENDS:
        y = ssm.convolution(u, params, reverse=reverse, backend=backend, chunk=64)
        assert y.dtype == jnp.bfloat16
        err = np.max(np.abs(np.asarray(y.astype(jnp.float32)) - reference)) / scale(reference)
        assert err < BF16_TOL, f"{backend} at L={length}: relative error {err:.2e}"


@pytest.mark.parametrize("backend", ssm.BACKENDS)
def test_reverse_is_flipped_forward(backend):
    params = make_params(seed=3)
    u = jax.random.normal(jax.random.PRNGKey(3), (2, 90, 4), jnp.float32)
    backward = ssm.convolution(u, params, reverse=True, backend=backend, chunk=32)
    flipped = jnp.flip(ssm.convolution(jnp.flip(u, 1), params, backend=backend, chunk=32), 1)
    np.testing.assert_allclose(backward, flipped, atol=F32_TOL * scale(flipped))


@pytest.mark.parametrize("backend", ssm.BACKENDS)
def test_two_directions_at_once_equal_one_at_a_time(backend):
    fwd, bwd = make_params(seed=4), make_params(seed=5)
    u = jax.random.normal(jax.random.PRNGKey(4), (2, 77, 2, 5), jnp.float32)
    both = ssm.multi_conv(u, ssm.stack_directions(fwd, bwd), (False, True), backend=backend, chunk=32)
    alone = [ssm.convolution(u[:, :, 0], fwd, backend=backend, chunk=32),
             ssm.convolution(u[:, :, 1], bwd, reverse=True, backend=backend, chunk=32)]
    for d in range(2):
        np.testing.assert_allclose(both[:, :, d], alone[d], atol=F32_TOL * scale(alone[d]))


def test_gradients_agree():
    params = make_params(seed=6)
    u = jax.random.normal(jax.random.PRNGKey(6), (1, 70, 3), jnp.float32)

    def loss(params, u, backend):
        return jnp.sum(jnp.sin(ssm.convolution(u, params, reverse=True, backend=backend, chunk=32)))

    grads = {b: jax.grad(loss, argnums=(0, 1))(params, u, b) for b in ssm.BACKENDS}
    for backend in ("toeplitz", "scan"):
        for got, want in zip(jax.tree.leaves(grads[backend]), jax.tree.leaves(grads["fft"])):
            np.testing.assert_allclose(got, want, atol=1e-4 * scale(want))


def gathered_toeplitz(K, reverse=False):
    """T[i, j] = K[i - j] (j <= i) by indexing: the obvious construction, as a reference."""
    length = K.shape[0]
    lag = jnp.arange(length)[:, None] - jnp.arange(length)[None, :]
    T = jnp.where(lag >= 0, K[jnp.clip(lag, 0, length - 1)], 0.0)
    return T.T if reverse else T


@pytest.mark.parametrize("length", [1, 2, 7, 64])
@pytest.mark.parametrize("reverse", [False, True])
def test_toeplitz_equals_indexing_with_the_same_gradient(length, reverse):
    K = jax.random.normal(jax.random.PRNGKey(length), (length,), jnp.float32)
    weights = jax.random.normal(jax.random.PRNGKey(100 + length), (length, length), jnp.float32)
    np.testing.assert_array_equal(ssm.toeplitz(K, reverse), gathered_toeplitz(K, reverse))
    grad = lambda build: jax.grad(lambda K: jnp.sum(jnp.sin(build(K, reverse)) * weights))(K)  # noqa: E731
    # Each entry sums up to `length` products; only the order of the sum differs.
    np.testing.assert_allclose(grad(ssm.toeplitz), grad(gathered_toeplitz), rtol=1e-5, atol=1e-6 * length)


def resolved(length=64, platform="cpu", config=BiGSConfig(), **overrides):
    return backends.resolve(config, length, deterministic=True, platform=platform, **overrides)


def test_conv_precision_is_float32_unless_a_gpu_runs_auto():
    assert resolved(platform="cpu").conv_precision == "float32"
    assert resolved(platform="gpu").conv_precision == "BF16_BF16_F32_X3"
    assert resolved(platform="gpu", config=BiGSConfig(conv_precision="float32")).conv_precision == "float32"
    assert jax.lax.Precision("float32") is jax.lax.Precision.HIGHEST                       # true float32


def test_auto_backend():
    assert resolved(1, "cpu").conv_backend == "toeplitz"
    assert resolved(backends.TOEPLITZ_MAX_LENGTH, "cpu").conv_backend == "toeplitz"
    assert resolved(backends.TOEPLITZ_MAX_LENGTH + 1, "cpu").conv_backend == "scan"
    assert resolved(16384, "gpu").conv_backend == "fft"
    assert resolved(64, None).conv_backend in ssm.BACKENDS


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'conv'"):
        ssm.convolution(jnp.ones((1, 4, 2)), make_params(), backend="conv")
