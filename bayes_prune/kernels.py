"""The query path's hot loop, fused: the law at every (row, draw) in one pass, with numba.

:meth:`bayes_prune.posterior.Posterior.summary` of many configurations spends its time in
elementwise numpy: the law's coefficients per row and draw (the variants make ``gamma`` and
``p'`` depend on the row), the invariant, Eq. 1. Each numpy step reads and writes a
(rows x draws) array; :func:`log_error` reads its inputs once and writes its output once. It
releases the GIL, so the query's chunks still run on every core, on threads. The numbers are
numpy's (:func:`bayes_prune.coords.laws`, :func:`bayes_prune.law.log_eq1`; a test compares
them) to float32 rounding.

numba compiles on first use and caches the machine code on disk, so the query path imports it
only for queries of :data:`MIN_ELEMENTS` (row, draw) pairs or more: a one-row query stays a
fast process. Without numba (or with ``BAYES_PRUNE_NUMBA=0``) the numpy path answers.
"""

from __future__ import annotations

import os

import numpy as np

from .coords import log_plateau

__all__ = ["MIN_ELEMENTS", "available", "log_dense_error", "log_error"]

MIN_ELEMENTS = 1_000_000  # below this, numba's import and cache load cost more than they save
_KERNEL = None


def available() -> bool:
    """Whether the fused kernel can run (numba imports and ``BAYES_PRUNE_NUMBA`` is not 0)."""
    if os.environ.get("BAYES_PRUNE_NUMBA", "1") == "0":
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _compile():
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    import numba

    f32 = np.float32
    half, one, two = f32(0.5), f32(1.0), f32(2.0)

    @numba.njit(nogil=True, fastmath=True, cache=True, inline="always")
    def lae(a, b):  # logaddexp
        return max(a, b) + np.log(one + np.exp(-abs(a - b)))

    @numba.njit(nogil=True, fastmath=True, cache=True, error_model="numpy")
    def law(log_d, log_l, log_w, log_n, inv, log_np, shift, at,
            log_gamma, kappa_gamma, log_p0, kappa, phi, psi, phi2, psi2, log_eps_up,
            cl, cw, cn, pivot, out):
        rows, draws = out.shape
        for r in range(rows):
            dl, dw, dn = log_l[r] - cl, log_w[r] - cw, log_n[r] - cn
            c = inv[r]
            a = at[c]
            for s in range(draws):
                gamma = np.exp(log_gamma[s] + kappa_gamma[s] * dn)
                up = log_eps_up[s]
                log_p = (log_p0[s] - (up - pivot) / gamma + kappa[s] * dn
                         - half * (phi2[s] * dl * dl + psi2[s] * dw * dw))
                log_m = log_d[r] + phi[s] * log_l[r] + psi[s] * log_w[r]
                if a >= 0:
                    log_m += shift[a, s]
                lnp = log_np[c, s]
                two_m, lo = two * log_m, two * log_p
                hi = lo + (two / gamma) * (up - lnp)
                # lae(two_m, hi) - lae(two_m, lo), with one log instead of two
                log_ratio = (max(two_m, hi) - max(two_m, lo)
                             + np.log((one + np.exp(-abs(two_m - hi)))
                                      / (one + np.exp(-abs(two_m - lo)))))
                out[r, s] = lnp + half * gamma * log_ratio

    @numba.njit(nogil=True, fastmath=True, cache=True, error_model="numpy")
    def dense(log_params, log_n, log_a, alpha, log_b, beta, log_c, log_eps0, log_eta2, z, sd,
              out):
        rows, draws = out.shape
        last = sd.shape[0] - 1  # sd has one row per configuration, or one for all
        for r in range(rows):
            sd_r = sd[min(r, last)]
            for s in range(draws):
                # log(e^x + e^y + e^c) with one log
                x, y, c = log_a[s] - alpha[s] * log_n[r], log_b[s] - beta[s] * log_params[r], \
                    log_c[s]
                m = max(x, max(y, c))
                t = m + np.log(np.exp(x - m) + np.exp(y - m) + np.exp(c - m))
                out[r, s] = log_eps0 + t - half * lae(two * t, log_eta2) + z[r, s] * sd_r[s]

    _KERNEL = (law, dense)
    return _KERNEL


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
    kernel = _compile()[0]
    log_eps_up = log_plateau(theta, np.float32(eps0), pivot)
    n = len(log_eps_up)
    f32 = np.float32

    def coef(name, default=0.0):
        v = theta.get(name)
        return np.full(n, default, f32) if v is None else np.ascontiguousarray(v, f32)

    log_gamma, phi, psi = coef("log_gamma"), coef("phi"), coef("psi")
    # the draw-only part of log p': everything but the terms in the row's n, depth and width
    log_p0 = coef("log_p_centre") + phi * f32(centres.log_depth) + psi * f32(centres.log_width)
    out = np.empty((len(log_d), n), f32)
    shift = np.zeros((1, n), f32) if shift is None else np.ascontiguousarray(shift, f32)
    kernel(*(np.ascontiguousarray(x, f32) for x in (log_d, log_l, log_w, log_n)),
           np.ascontiguousarray(inv, np.int64), np.ascontiguousarray(log_np, f32), shift,
           np.ascontiguousarray(at, np.int64), log_gamma, coef("kappa_gamma_n"), log_p0,
           coef("kappa_n"), phi, psi, coef("phi2"), coef("psi2"),
           np.ascontiguousarray(log_eps_up, f32), f32(centres.log_depth),
           f32(centres.log_width), f32(log_n_centre), f32(pivot), out)
    return out


def log_dense_error(params, n_train, dense, eps0: float, z, sd) -> np.ndarray:
    """Log dense error draws ``(configurations, draws)`` float32: the envelope
    (:func:`bayes_prune.law.log_dense_error`) at the configurations' ``params`` and ``n_train``
    under the draws of ``dense`` (a :class:`~bayes_prune.law.DenseLaw` of ``(draws,)`` arrays),
    plus ``z * sd`` (standard normal draws and their scale, each ``(configurations, draws)``
    or broadcasting to it), in one pass."""
    f32 = np.float32
    z = np.ascontiguousarray(z, f32)
    out = np.empty(z.shape, f32)
    sd = np.atleast_2d(np.asarray(sd, f32))
    sd = np.ascontiguousarray(np.broadcast_to(sd, (sd.shape[0], z.shape[1])))
    _compile()[1](*(np.ascontiguousarray(np.log(np.ravel(x)), f32) for x in (params, n_train)),
                  *(np.ascontiguousarray(np.broadcast_to(v, z.shape[1:]), f32) for v in
                    (dense.log_a, dense.alpha, dense.log_b, dense.beta, dense.log_c_inf)),
                  f32(np.log(eps0)), f32(2 * np.log(dense.eta)), z, sd, out)
    return out
