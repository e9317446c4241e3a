"""The query path's hot loop, fused: the law at every (row, draw) in one pass, with JAX.

:meth:`bayes_prune.posterior.Posterior.summary` of many configurations spends its time in
elementwise numpy: the law's coefficients per row and draw (the variants make ``gamma`` and
``p'`` depend on the row), the invariant, Eq. 1. Each numpy step reads and writes a
(rows x draws) array; XLA fuses the whole expression into one loop that reads its inputs once,
writes its output once and evaluates ``exp`` and ``log`` on SIMD lanes. The numbers are
numpy's (:func:`bayes_prune.coords.laws`, :func:`bayes_prune.law.log_eq1`; a test compares
them) to float32 rounding.

Why JAX and not numba: the same fused loop compiled by numba (``fastmath``, float32) calls the
C library's scalar ``expf``/``logf``, as pip's llvmlite has no vector math library. On 10,000
rows x 1,000 draws, single-threaded on a 2-core AVX2 machine: Eq. 1 took 0.20 s in numba and
0.08 s in XLA, the dense envelope 0.28 s and 0.07 s (``benchmarks/fit_speed.py
--query-only`` prints the whole query's time).

XLA compiles one program per shape, so the shapes are padded to powers of two (a query's
chunks then share one or two programs). Calls release the GIL, so the query's chunks still run
on every core, on threads. Importing JAX and the first compilations cost about 1.4 s once per
process (10,000 x 1,000 in a fresh process: 1.80 s fused, 0.70 s numpy; then 0.42 s against
0.70 s every time, ``benchmarks/fit_speed.py --query-only``). :func:`use` decides, by
``BAYES_PRUNE_FUSED``:

- ``auto`` (the default): fused for :data:`MIN_ELEMENTS` (row, draw) pairs or more once JAX is
  imported (a fit, or an earlier large query, imported it), and for
  :data:`IMPORT_ELEMENTS` or more in any case, where the import pays for itself at once;
- ``1``: fused for :data:`MIN_ELEMENTS` or more (a notebook that will ask many queries);
- ``0``: never. Without JAX the numpy path answers.
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np

from .coords import log_plateau
from .errors import UserError

__all__ = ["IMPORT_ELEMENTS", "MIN_ELEMENTS", "available", "log_dense_error", "log_error", "use"]

MIN_ELEMENTS = 1_000_000  # below this, a dispatch and a padded copy cost more than they save
# numpy takes about 0.08 s per million pairs, the fused path half that: the ~1.4 s of importing
# JAX and compiling come back from about 35 million on
IMPORT_ELEMENTS = 35_000_000
_MIN_BUCKET = 64


def available() -> bool:
    """Whether the fused kernel can run: JAX imports."""
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def use(elements: int) -> bool:
    """Whether a query of ``elements`` (row, draw) pairs takes the fused path (see the module
    docstring for ``BAYES_PRUNE_FUSED``)."""
    mode = os.environ.get("BAYES_PRUNE_FUSED", "auto")
    if mode not in ("auto", "0", "1"):
        raise UserError(f"BAYES_PRUNE_FUSED={mode!r} must be auto, 0 or 1")
    if mode == "0" or elements < MIN_ELEMENTS:
        return False
    if mode == "auto" and "jax" not in sys.modules and elements < IMPORT_ELEMENTS:
        return False
    return available()


def _bucket(n: int) -> int:
    """The padded length of ``n``: the next power of two, at least :data:`_MIN_BUCKET`."""
    return max(_MIN_BUCKET, 1 << (max(n, 1) - 1).bit_length())


def _pad(x: np.ndarray, n: int, value=0) -> np.ndarray:
    """``x`` (float32 or int) with its first axis padded to ``n`` with ``value``."""
    x = np.ascontiguousarray(x)
    if x.shape[0] == n:
        return x
    return np.concatenate([x, np.full((n - x.shape[0], *x.shape[1:]), value, x.dtype)])


@functools.cache
def _compile():
    import jax
    import jax.numpy as jnp

    @jax.jit
    def law(log_d, log_l, log_w, log_n, inv, log_np, shift, at, log_gamma, kappa_gamma,
            log_p0, kappa, phi, psi, phi2, psi2, log_eps_up, cl, cw, cn, pivot):
        col = lambda v: v[:, None]  # noqa: E731  rows down, draws across
        dl, dw, dn = col(log_l - cl), col(log_w - cw), col(log_n - cn)
        gamma = jnp.exp(log_gamma + kappa_gamma * dn)
        log_p = (log_p0 - (log_eps_up - pivot) / gamma + kappa * dn
                 - 0.5 * (phi2 * dl * dl + psi2 * dw * dw))
        a = at[inv]
        log_m = (col(log_d) + phi * col(log_l) + psi * col(log_w)
                 + jnp.where(col(a >= 0), shift[jnp.maximum(a, 0)], 0.0))
        lnp = log_np[inv]
        two_m, lo = 2.0 * log_m, 2.0 * log_p
        hi = lo + (2.0 / gamma) * (log_eps_up - lnp)
        return lnp + 0.5 * gamma * (jnp.logaddexp(two_m, hi) - jnp.logaddexp(two_m, lo))

    @jax.jit
    def dense(log_params, log_n, log_a, alpha, log_b, beta, log_c, log_eps0, log_eta2, z, sd):
        x = log_a - alpha * log_n[:, None]
        y = log_b - beta * log_params[:, None]
        t = jnp.logaddexp(jnp.logaddexp(x, y), log_c)
        return log_eps0 + t - 0.5 * jnp.logaddexp(2.0 * t, log_eta2) + z * sd

    return law, dense


def log_error(log_d, log_l, log_w, log_n, inv, log_np, shift, at, theta: dict, eps0: float,
              centres, pivot: float, log_n_centre: float) -> np.ndarray:
    """Log error draws ``(rows, draws)`` float32 of the joint law, fused.

    Per row: ``log_d``, ``log_l``, ``log_w``, ``log_n`` (log density, depth, width, n_train)
    and ``inv``, the row's configuration, indexing ``log_np`` ``(configurations, draws)``, its
    log dense error draws, and ``at``, the configuration's row in ``shift`` (the invariant's
    discrepancy draws ``(beyond, draws)``; -1 for none). ``theta`` holds the group's
    coefficient draws (the variants' absent ones are taken as 0), ``eps0`` its random-guess
    error, ``centres`` the grid's :class:`~bayes_prune.coords.Centres`, ``pivot`` the group's
    pivot error and ``log_n_centre`` its mean log n_train."""
    f32 = np.float32
    log_eps_up = np.asarray(log_plateau(theta, f32(eps0), pivot), f32)
    n = len(log_eps_up)

    def coef(name):
        v = theta.get(name)
        return np.zeros(n, f32) if v is None else np.asarray(v, f32)

    phi, psi = coef("phi"), coef("psi")
    # the draw-only part of log p': everything but the terms in the row's n, depth and width
    log_p0 = coef("log_p_centre") + phi * f32(centres.log_depth) + psi * f32(centres.log_width)
    rows, configs = len(log_d), len(log_np)
    shift = np.zeros((1, n), f32) if shift is None else np.asarray(shift, f32)
    r, c = _bucket(rows), _bucket(configs)
    out = _compile()[0](
        *(_pad(np.asarray(x, f32), r) for x in (log_d, log_l, log_w, log_n)),
        _pad(np.asarray(inv, np.int32), r), _pad(np.asarray(log_np, f32), c),
        _pad(shift, _bucket(len(shift))), _pad(np.asarray(at, np.int32), c, -1),
        coef("log_gamma"), coef("kappa_gamma_n"), log_p0, coef("kappa_n"), phi, psi,
        coef("phi2"), coef("psi2"), log_eps_up, f32(centres.log_depth),
        f32(centres.log_width), f32(log_n_centre), f32(pivot))
    return np.asarray(out)[:rows]  # read-only, no copy


def log_dense_error(params, n_train, dense, eps0: float, z, sd) -> np.ndarray:
    """Log dense error draws ``(configurations, draws)`` float32: the envelope
    (:func:`bayes_prune.law.log_dense_error`) at the configurations' ``params`` and ``n_train``
    under the draws of ``dense`` (a :class:`~bayes_prune.law.DenseLaw` of ``(draws,)`` arrays),
    plus ``z * sd`` (standard normal draws and their scale, each ``(configurations, draws)``
    or broadcasting to it), in one pass."""
    f32 = np.float32
    z = np.asarray(z, f32)
    configs, draws = z.shape
    c = _bucket(configs)
    sd = np.atleast_2d(np.asarray(sd, f32))
    sd = np.broadcast_to(sd, (sd.shape[0], draws))
    out = _compile()[1](
        *(_pad(np.log(np.ravel(x)).astype(f32), c) for x in (params, n_train)),
        *(np.ascontiguousarray(np.broadcast_to(np.asarray(v, f32), (draws,))) for v in
          (dense.log_a, dense.alpha, dense.log_b, dense.beta, dense.log_c_inf)),
        f32(np.log(eps0)), f32(2 * np.log(dense.eta)), _pad(z, c),
        sd if sd.shape[0] == 1 else _pad(sd, c))
    return np.asarray(out)[:configs]
