"""The query path's hot loop, fused: the law at every (row, draw) in one pass, with JAX.

:meth:`bayes_prune.posterior.Posterior.summary` of many configurations spends its time in
elementwise numpy: the law's coefficients per row and draw (the variants make ``gamma`` and
``p'`` depend on the row), the invariant, Eq. 1. Each numpy step reads and writes a
(rows x draws) array; XLA fuses the whole expression into one loop that reads its inputs once,
writes its output once and evaluates ``exp`` and ``log`` on SIMD lanes. The numbers are
numpy's (:func:`bayes_prune.coords.prune_law`, :func:`bayes_prune.law.log_eq1`; a test compares
them) to float32 rounding.

Why JAX and not numba: the same fused loop compiled by numba (``fastmath``, float32) calls the
C library's scalar ``expf``/``logf``, as pip's llvmlite has no vector math library. On 10,000
rows x 1,000 draws, single-threaded on a 2-core AVX2 machine: Eq. 1 took 0.20 s in numba and
0.08 s in XLA, the dense envelope 0.28 s and 0.07 s (``benchmarks/fit_speed.py
--query-only`` prints the whole query's time).

The normal draws are made inside the kernels too. numpy's float32 normals cost 9.5-15 ns each
and were a third of a large query's time. The kernels instead take uniforms (3.8-4.6 ns) and
turn them into normals by the inverse CDF (:func:`normals`, a polynomial XLA evaluates on SIMD
lanes; numpy evaluates the same one). ``jax.numpy.logaddexp``, which also handles infinities,
is replaced by :func:`_logaddexp`, and the dense envelope's three terms are summed with one
``log``: 9.4 -> 6.6 ns per element for the envelope.

XLA compiles one program per shape, so the shapes are padded to powers of two (a query's
chunks then share one or two programs). Calls release the GIL, so the query's chunks still run
on every core, on threads. Importing JAX and the first compilations cost about 1.4 s once per
process. 10,000 x 1,000, ``benchmarks/fit_speed.py --query-only``: 0.34-0.39 s fused and
1.1 s numpy every time, 2.4-3.0 s fused in a fresh process. Before the normals moved into the
kernels it was 0.42-0.43 s fused and 0.9-1.0 s numpy. :func:`use` decides, by
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


def uniforms(rng: np.random.Generator, rows: int, draws: int) -> np.ndarray:
    """Uniform float32 draws ``(rows, draws)`` in [0, 1), from which :func:`normals` makes
    standard normals: a third of the cost of numpy's normals to draw, and the fused kernels
    turn them into normals inside the pass that uses them."""
    return rng.random((rows, draws), dtype=np.float32)


# erfinv in single precision (M. Giles, "Approximating the erfinv function", GPU Computing
# Gems, 2011): a polynomial in w = -log(1 - x^2) on each side of w = 5, as XLA computes it
_ERFINV_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                   0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def normals(u, xp=np):
    """Standard normal draws of the :func:`uniforms` ``u`` (any shape) by the inverse CDF,
    ``sqrt(2) erfinv(2u - 1)``, in numpy or, with ``xp`` ``jax.numpy``, inside a kernel (the
    same draws to float32 rounding). The uniforms are moved half a step inward, so that 0
    gives a finite normal (-5.4)."""
    x = 2.0 * u - np.float32(1 - 2.0 ** -24)  # in (-1, 1)
    w = -xp.log1p(-x * x)
    if xp is np:  # in place, and the tail's polynomial only where w >= 5 (0.3 % of draws)
        p = _horner(_ERFINV_CENTRAL, w - np.float32(2.5))
        tail = w >= 5.0
        if tail.any():
            p[tail] = _horner(_ERFINV_TAIL, np.sqrt(w[tail]) - np.float32(3.0))
        p *= x
        p *= np.float32(np.sqrt(2))
        return p
    p = xp.where(w < 5.0, _horner(_ERFINV_CENTRAL, w - np.float32(2.5), xp),
                 _horner(_ERFINV_TAIL, xp.sqrt(w) - np.float32(3.0), xp))
    return np.float32(np.sqrt(2)) * p * x


def _horner(coefs, t, xp=np):
    """The polynomial ``coefs`` (highest power first) at ``t``, float32 (numpy: in place)."""
    if xp is np:
        p = np.full_like(t, coefs[0])
        for c in coefs[1:]:
            p *= t
            p += np.float32(c)
        return p
    p = xp.full_like(t, coefs[0])
    for c in coefs[1:]:
        p = np.float32(c) + p * t
    return p


def _bucket(n: int) -> int:
    """The padded length of ``n``: the next power of two, at least :data:`_MIN_BUCKET`."""
    return max(_MIN_BUCKET, 1 << (max(n, 1) - 1).bit_length())


def _pad(x: np.ndarray, n: int, value=0) -> np.ndarray:
    """``x`` (float32 or int) with its first axis padded to ``n`` with ``value``."""
    x = np.ascontiguousarray(x)
    if x.shape[0] == n:
        return x
    return np.concatenate([x, np.full((n - x.shape[0], *x.shape[1:]), value, x.dtype)])


def _logaddexp(a, b, xp):
    """``log(e^a + e^b)`` of finite ``a`` and ``b``: ``jax.numpy.logaddexp`` also handles
    infinities, at a third more time per element in these kernels (a draw that is not finite
    is refused after the kernel anyway)."""
    return xp.maximum(a, b) + xp.log1p(xp.exp(-xp.abs(a - b)))


@functools.cache
def _compile():
    import jax
    import jax.numpy as jnp

    @functools.partial(jax.jit, static_argnames="as_error")
    def law(log_d, log_l, log_w, log_n, inv, log_np, off, u_shift, sd_shift, at, log_gamma,
            kappa_gamma,
            log_p0, kappa, phi, psi, phi2, psi2, log_eps_up, cl, cw, cn, pivot, rows,
            as_error=False):
        col = lambda v: v[:, None]  # noqa: E731  rows down, draws across
        dl, dw, dn = col(log_l - cl), col(log_w - cw), col(log_n - cn)
        gamma = jnp.exp(log_gamma + kappa_gamma * dn)
        log_p = (log_p0 - (log_eps_up - pivot) / gamma + kappa * dn
                 - 0.5 * (phi2 * dl * dl + psi2 * dw * dw))
        shift = normals(u_shift, jnp) * sd_shift
        a = at[inv]
        log_m = (col(log_d) + phi * col(log_l) + psi * col(log_w)
                 + jnp.where(col(a >= 0), shift[jnp.maximum(a, 0)], 0.0))
        if off is not None:  # None is an empty pytree: a trace without the offsets
            log_m = log_m + off[inv]
        lnp = log_np[inv]
        two_m, lo = 2.0 * log_m, 2.0 * log_p
        hi = lo + (2.0 / gamma) * (log_eps_up - lnp)
        out = lnp + 0.5 * gamma * (_logaddexp(two_m, hi, jnp) - _logaddexp(two_m, lo, jnp))
        # whether every draw of the real rows (not the padding) is finite, in the same pass
        real = jnp.arange(out.shape[0])[:, None] < rows
        finite = jnp.all(jnp.isfinite(out) | ~real)
        return (jnp.exp(out) if as_error else out), finite

    @jax.jit
    def dense(log_params, log_n, log_a, alpha, log_b, beta, log_c, log_eps0, log_eta2, u, sd):
        z = normals(u, jnp)
        x = log_a - alpha * log_n[:, None]
        y = log_b - beta * log_params[:, None]
        m = jnp.maximum(jnp.maximum(x, y), log_c)  # log(e^x + e^y + e^c): 3 exp, 1 log
        t = m + jnp.log(jnp.exp(x - m) + jnp.exp(y - m) + jnp.exp(log_c - m))
        return log_eps0 + t - 0.5 * _logaddexp(2.0 * t, log_eta2, jnp) + z * sd

    return law, dense


def log_error(log_d, log_l, log_w, log_n, inv, log_np, shift, at, theta: dict, eps0: float,
              centres, pivot: float, log_n_centre: float, as_error: bool = False,
              offset=None) -> tuple[np.ndarray, bool]:
    """Log error draws ``(rows, draws)`` float32 of the joint law, fused, and whether all of
    them are finite; with ``as_error``, the errors themselves (their ``exp``, in the same
    pass: a query's expected band needs no other step between the law and its statistics).

    Per row: ``log_d``, ``log_l``, ``log_w``, ``log_n`` (log density, depth, width, n_train)
    and ``inv``, the row's configuration, indexing ``log_np`` ``(configurations, draws)``, its
    log dense error draws, and ``at``, the configuration's row in ``shift`` (the invariant's
    discrepancy offsets: ``(u, sd)``, the :func:`uniforms` ``(beyond, ...)`` of their normals
    and their scale ``(beyond, 1 or draws)``, or ``None``; -1 for none); ``offset``, each
    configuration's own log invariant offset ``(configurations, draws)`` (the fit's invariant
    scatter), or ``None``. ``theta`` holds the group's
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
    u_shift, sd_shift = (np.zeros((1, n), f32), np.zeros((1, 1), f32)) \
        if shift is None else (np.asarray(shift[0], f32), np.asarray(shift[1], f32))
    b = _bucket(len(u_shift))
    r, c = _bucket(rows), _bucket(configs)
    out, finite = _compile()[0](
        *(_pad(np.asarray(x, f32), r) for x in (log_d, log_l, log_w, log_n)),
        _pad(np.asarray(inv, np.int32), r), _pad(np.asarray(log_np, f32), c),
        None if offset is None else _pad(np.asarray(offset, f32), c),
        _pad(u_shift, b), sd_shift if sd_shift.shape[0] == 1 else _pad(sd_shift, b),
        _pad(np.asarray(at, np.int32), c, -1),
        coef("log_gamma"), coef("kappa_gamma_n"), log_p0, coef("kappa_n"), phi, psi,
        coef("phi2"), coef("psi2"), log_eps_up, f32(centres.log_depth),
        f32(centres.log_width), f32(log_n_centre), f32(pivot), np.int32(rows),
        as_error=as_error)
    return np.asarray(out)[:rows], bool(finite)  # read-only, no copy


def log_dense_error(params, n_train, dense, eps0: float, u, sd) -> np.ndarray:
    """Log dense error draws ``(configurations, draws)`` float32: the envelope
    (:func:`bayes_prune.law.log_dense_error`) at the configurations' ``params`` and ``n_train``
    under the draws of ``dense`` (a :class:`~bayes_prune.law.DenseLaw` of ``(draws,)`` arrays),
    plus ``z * sd``, ``z`` the standard normals of the :func:`uniforms` ``u`` and ``sd`` their
    scale, ``(configurations, draws)`` or broadcasting to it, in one pass."""
    f32 = np.float32
    u = np.asarray(u, f32)
    configs, draws = u.shape
    c = _bucket(configs)
    sd = np.atleast_2d(np.asarray(sd, f32))
    sd = np.broadcast_to(sd, (sd.shape[0], draws))
    out = _compile()[1](
        *(_pad(np.log(np.ravel(x)).astype(f32), c) for x in (params, n_train)),
        *(np.ascontiguousarray(np.broadcast_to(np.asarray(v, f32), (draws,))) for v in
          (dense.log_a, dense.alpha, dense.log_b, dense.beta, dense.log_c_inf)),
        f32(np.log(eps0)), f32(2 * np.log(dense.eta)), _pad(u, c),
        sd if sd.shape[0] == 1 else _pad(sd, c))
    return np.asarray(out)[:configs]
