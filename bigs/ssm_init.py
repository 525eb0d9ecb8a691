"""The S4D state matrix's initial values, with numpy only (shared by the Flax and the
PyTorch model; bigs/ssm.py re-exports `init_A`).

S4D: Gu, Gupta, Goel, Re, "On the Parameterization and Initialization of Diagonal State
Space Models" (2022), section 4; the original's version is `make_DPLR_HiPPO` and
`S4dLayer` in `BiGS/modeling_flax_bigs.py`.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def init_A(scaling: str, num_ssm: int) -> tuple[np.ndarray, np.ndarray]:
    """Initial (A_re, A_im), each [num_ssm] float32, for S4D's three initialisations.

    hippo: eigenvalues of the normal part of HiPPO-LegS (S4D-LegS), computed in float32 as
           the original does, so A_re is -0.5000003576 rather than -0.5 (num_ssm 16).
    lin:   A = -1/2 + i pi n                     (S4D-Lin)
    inv:   A = -1/2 + i N/pi (N/(2n+1) - 1)       (S4D-Inv)
    Raises ValueError for another scaling. The arrays are read-only (cached).
    """
    n = np.arange(num_ssm, dtype=np.float32)
    if scaling == "hippo":
        # HiPPO-LegS A = -(tril(p p^T) - diag(n)), p = sqrt(2n+1); its normal part is
        # S = A + P P^T with P = sqrt(n + 1/2): -1/2 on the diagonal (up to rounding) plus a
        # skew part whose eigenvalues i*lambda we get from the Hermitian matrix -i * S.
        # The diagonal's entries are single IEEE float32 operations, so numpy gives the
        # original's bits. The original takes their mean with XLA on the CPU, which sums in
        # order in float32 and divides: a running float32 sum gives its bits.
        p = np.sqrt(np.float32(1) + np.float32(2) * n)
        low_rank = np.sqrt(n + np.float32(0.5))
        diagonal = -(p * p - n) + low_rank * low_rank
        mean = np.add.accumulate(diagonal, dtype=np.float32)[-1] / np.float32(num_ssm)
        a_re = np.full((num_ssm,), mean, np.float32)
        a_im = _hippo_eigenvalues(num_ssm)
    elif scaling == "lin":
        a_re, a_im = np.full((num_ssm,), -0.5, np.float32), (np.pi * n).astype(np.float32)
    elif scaling == "inv":
        a_re = np.full((num_ssm,), -0.5, np.float32)
        a_im = (num_ssm / np.pi * (num_ssm / (2 * n + 1) - 1)).astype(np.float32)
    else:
        raise ValueError(f"unknown S4D scaling {scaling!r}; expected 'hippo', 'lin' or 'inv'")
    a_re.flags.writeable = a_im.flags.writeable = False
    return a_re, a_im


def _hippo_eigenvalues(num_ssm: int) -> np.ndarray:
    """lambda [num_ssm] float32: eigenvalues of -i * S, S the normal part of HiPPO-LegS.
    LAPACK's complex64 eigh through numpy: the same float32 results to rounding as jax's
    eigh (which the original calls), without compiling one."""
    n = np.arange(num_ssm, dtype=np.float32)
    p = np.sqrt(np.float32(1) + np.float32(2) * n)
    legs = -(np.tril(p[:, None] * p[None, :]) - np.diag(n))
    low_rank = np.sqrt(n + np.float32(0.5))
    normal = legs + low_rank[:, None] * low_rank[None, :]
    return np.linalg.eigh((normal * np.complex64(-1j)).astype(np.complex64))[0].astype(np.float32)
