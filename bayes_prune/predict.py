"""Drawing a query's errors: the rows cut into chunks of whole configurations, each chunk's
draws made on a thread, with numpy or the fused kernel (:mod:`bayes_prune.kernels`).

:meth:`bayes_prune.posterior.Posterior.predict_draws` and ``summary`` check the query and hand
it here with, per (arch, task) group of its rows, the group's draws (:class:`Group`); ``post``
below is that posterior: its fitted configurations, their dense errors and invariant offsets,
and the discrepancy beyond its grid (:class:`bayes_prune.beyond.Beyond`). What a draw is made
of is said in :mod:`bayes_prune.posterior`'s docstring. Numpy only, like every query.
"""

from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from . import kernels
from .coords import ZETA, dense_law, prune_law
from .errors import UserError
from .grid import CONFIG_KEY
from .law import STUDENT_NU, binomial_log_var, log_dense_error, log_eq1, log_invariant

CHUNK = 1000  # rows drawn at once, a thread each: bounds memory at ~CHUNK x draws x a few


class Group(NamedTuple):
    """What the rows of one (arch, task) group share: its coefficient draws ``theta`` (float32),
    its noise scales ``(sigma, sigma_seed, tau)``, its invariant scatter ``tau_m`` (``None``
    without one), its dense error at n = 0 and test-set size, its pivot error and centre of log
    n_train, its drift rates (:meth:`bayes_prune.beyond.Beyond.drift_rates`) and its name."""

    theta: dict
    noise: tuple
    tau_m: np.ndarray | None
    eps0: float
    n_test: float
    pivot: float
    n_centre: float
    drift: dict | None
    name: str
    depth_centre: float | None = None  # its mean log depth, about which zeta acts
    dense_centres: dict | None = None  # where its dense law is centred (coords.dense_centres)


# the uniform at which kernels.normals turns positive (its uniforms are moved half a step inward)
_HALF = np.float32(0.5 - 2.0 ** -25)


def each_chunk(post, rows: pd.DataFrame, params: np.ndarray, groups: dict, band: str,
               seed: int, fn, discrepancy: bool = True) -> None:
    """Draw the errors of ``rows`` (checked; ``params`` their weight counts) chunk by chunk, on
    threads, calling ``fn(i, draws)`` with the chunk's row positions ``i`` and its draws
    ``(len(i), draws)``. ``groups`` maps each (arch, task) of the rows to its
    :class:`Group`; the g-th group's chunks draw from streams ``(seed, g, ...)``."""
    jobs = []
    for g, (key, idx) in enumerate(rows.groupby(["arch", "task"], sort=False).indices.items()):
        jobs += [(groups[key], i, _stream(seed, g, a), _stream(seed, g, a, 1))
                 for a, i in _chunks(rows, idx)]

    # the fused kernel for large queries (:func:`bayes_prune.kernels.use`); the same draws
    # as numpy's, to float32 rounding
    fused = kernels.use(len(rows) * post.n_draws)

    def work(job):
        grp, i, rng, rng_m = job
        theta, (sigma, sigma_seed, tau) = grp.theta, grp.noise
        r = rows.iloc[i]
        col = {c: r[c].to_numpy(np.float32)[:, None] for c in
               ("n_train", "density", "depth", "width")}
        # Rows of one configuration (e.g. a curve over densities) share their draws, so a
        # curve is one coherent draw per posterior sample: draw per configuration `uniq`
        keys = list(zip(*(r[c].tolist() for c in CONFIG_KEY), params[i].tolist(), strict=True))
        first: dict = {}
        inv = np.array([first.setdefault(k, len(first)) for k in keys])
        uniq = list(first)
        trained = np.array([post._config_index.get(k[:-1], -1) for k in uniq])
        spread = post.beyond.discrepancy_var(grp.name, uniq, grp.drift) if discrepancy \
            else None
        centred = {k: np.float32(v) for k, v in (grp.dense_centres or {}).items()}
        if ZETA in theta:  # the dense law's size depends on depth: a law per configuration
            dense = functools.partial(dense_law, theta, post.centres, np.float32(grp.eps0),
                                      log_depth_centre=np.float32(grp.depth_centre), **centred)
        else:
            dense = dense_law(theta, post.centres, np.float32(grp.eps0), **centred)
        log_np = dense_draws(post, uniq, trained, dense, grp.eps0, tau, spread, rng, fused)
        shift, at = None, np.full(len(uniq), -1)
        if spread is not None:  # the invariant's discrepancy, beyond the grid only
            out, _, var_m, var_up = spread
            # uniforms that the kernel (or numpy below) turns into normal offsets; on the side
            # where the network prunes better (a normal above 0: u above one half) their sd
            # takes the skew too (module docstring of bayes_prune.discrepancy)
            u = kernels.uniforms(rng_m, len(out), post.n_draws)
            shift = (u, np.sqrt(var_m) if not var_up.any() else
                     np.sqrt(np.where(u > _HALF, var_m + var_up, var_m)))
            at = positions(len(uniq), out)
        off = None if grp.tau_m is None else \
            invariant_offsets(post, grp.tau_m, trained, rng_m)
        if band == "prediction":  # a new run's seed offset: one per row
            off = None if off is None else off[inv]
            log_np = log_np[inv]
            log_np += sigma_seed * rng.standard_normal(log_np.shape, dtype=np.float32)
            inv, at = np.arange(len(r)), at[inv]
        if not np.isfinite(log_np).all():  # rows only to name one (a copy otherwise)
            check_finite(grp.name, r, {"dense error": log_np[inv]})
        if fused:
            expected = band == "expected"  # the errors straight from the kernel
            out, finite = kernels.log_error(
                *(np.log(col[c][:, 0]) for c in ("density", "depth", "width", "n_train")),
                inv, log_np, shift, at, theta, grp.eps0, post.centres, grp.pivot,
                grp.n_centre, as_error=expected, offset=off)
            if expected:
                if not finite:
                    check_finite(grp.name, r, {"error": np.log(out)})
                return fn(i, np.minimum(out, 1.0))
            log_eps = out
        else:
            prune = prune_law(theta, post.centres, np.float32(grp.eps0), n_train=col["n_train"],
                              depth=col["depth"], width=col["width"], log_err_pivot=grp.pivot,
                              log_n_centre=np.float32(grp.n_centre))
            log_m = log_invariant(col["density"], col["depth"], col["width"], prune.phi,
                                  prune.psi)
            if shift is not None:
                hit = np.flatnonzero(at[inv] >= 0)
                offsets = kernels.normals(shift[0]) * shift[1]
                log_m[hit] += offsets[at[inv[hit]]]
            if off is not None:
                log_m += off[inv]
            check_finite(grp.name, r, {"invariant m*": log_m})
            log_eps = log_eq1(log_m, log_np[inv], np.log(prune.eps_up), prune.gamma,
                              np.log(prune.p_prime))
        if band == "prediction":
            n_test = (r["n_test"].to_numpy(np.float32)[:, None] if "n_test" in r
                      else np.float32(grp.n_test))
            eps = np.clip(np.exp(log_eps), 1e-6, 1 - 1e-6)
            sd = np.sqrt(sigma**2 + binomial_log_var(eps, n_test))
            # the point noise the fit's likelihood had: normal, or Student-t
            noise = rng.standard_t(STUDENT_NU, log_eps.shape).astype(np.float32) \
                if post.meta["settings"].get("likelihood") == "student" else \
                rng.standard_normal(log_eps.shape, dtype=np.float32)
            log_eps = log_eps + sd * noise
        check_finite(grp.name, r, {"error": log_eps})
        # an error is a fraction: far beyond the grid the log-normal offsets of the dense error
        # and the invariant (sd growing with the distance) put draws above 1, which are 1
        fn(i, np.exp(np.minimum(log_eps, 0.0)))

    # numpy's ufuncs and sorts release the GIL: chunks on threads use every core. BLAS's
    # own threads would spin beside them (10k configurations x 1k draws on 2 cores: 1.11 s
    # with OpenBLAS's 2 threads, 0.81 s with one), so one BLAS thread while they run
    blas = threadpool_limits(1, user_api="blas") if len(jobs) > 1 else \
        contextlib.nullcontext()
    with blas, ThreadPoolExecutor(max(min(len(jobs), os.cpu_count() or 1), 1)) as pool:
        list(pool.map(work, jobs))


def invariant_offsets(post, tau_m: np.ndarray, trained: np.ndarray, rng) -> np.ndarray:
    """Each configuration's own offset of the log invariant ``(configurations, draws)``, for a
    fit with the invariant scatter: a trained configuration's (``trained``: its index among
    the fit's, or -1) posterior draws, a new one's ``Normal(0, tau_m)``, the group's scatter
    draws. ``rng`` is drawn from after the discrepancy's offsets, so that those are the same
    with or without it."""
    off = kernels.normals(kernels.uniforms(rng, len(trained), post.n_draws)) \
        * tau_m.astype(np.float32)
    old = np.flatnonzero(trained >= 0)
    off[old] = post.draws["log_m_config"][:, trained[old]].T
    return off


def dense_draws(post, uniq, trained, dense, eps0, tau, spread, rng, fused: bool = False
                ) -> np.ndarray:
    """Draws of log dense error ``(configurations, draws)`` of the configurations ``uniq``
    (``CONFIG_KEY`` values and weight count; ``trained``: each one's index among the fit's
    configurations, or -1): trained ones from their posterior, others from the dense law plus
    the configuration scatter ``tau`` and, for those beyond the grid, the discrepancy
    (``spread`` from :meth:`bayes_prune.beyond.Beyond.discrepancy_var`, or ``None``), both in
    one normal draw of sd ``sqrt(tau^2 + sd_dense^2)``; the law is evaluated once per
    untrained configuration (``fused``: by :func:`bayes_prune.kernels.log_dense_error`).
    ``dense`` is the group's :class:`~bayes_prune.law.DenseLaw`, or, for a law whose size
    depends on depth, a function of the configurations' depths ``(configurations, 1)`` that
    returns it (numpy then)."""
    out = np.empty((len(uniq), post.n_draws), dtype=np.float32)
    new = np.flatnonzero(trained < 0)
    if len(new):
        p_u = np.array([uniq[j][-1] for j in new], dtype=np.float32)[:, None]
        n_u = np.array([uniq[j][CONFIG_KEY.index("n_train")] for j in new],
                       dtype=np.float32)[:, None]
        u = kernels.uniforms(rng, len(new), post.n_draws)  # the normals z of sd below
        if callable(dense):
            dense, fused = dense(depth=np.array([uniq[j][CONFIG_KEY.index("depth")]
                                                 for j in new], dtype=np.float32)[:, None]), False
        if spread is None:
            sd = tau
        else:  # those beyond the grid (never trained) get the discrepancy's variance too
            var = np.zeros((len(new), spread[1].shape[1]), np.float32)
            var[positions(len(uniq), new)[spread[0]]] = spread[1]
            sd = np.sqrt(tau ** 2 + var)
        if fused and len(new) == len(uniq):  # none trained: the kernel's array itself
            return kernels.log_dense_error(p_u, n_u, dense, eps0, u, sd)
        if fused:
            out[new] = kernels.log_dense_error(p_u, n_u, dense, eps0, u, sd)
        else:
            out[new] = (log_dense_error(p_u, n_u, dense, np.float32(eps0))
                        + kernels.normals(u) * sd)
    old = np.flatnonzero(trained >= 0)
    if len(old):
        out[old] = post.draws["log_eps_np_config"][:, trained[old]].T
    return out


def positions(n: int, idx: np.ndarray) -> np.ndarray:
    """``at`` of length ``n`` with ``at[idx[j]] = j`` and -1 elsewhere: where each of ``n``
    items sits in the subset ``idx``."""
    at = np.full(n, -1)
    at[idx] = np.arange(len(idx))
    return at


def _stream(*key: int) -> np.random.Generator:
    """The random stream of one chunk's draws: SFC64, a fifth cheaper than numpy's default
    PCG64 for the uniforms the query's normals are made of (float32, 10 million: 3.8 against
    4.6 ns each)."""
    return np.random.Generator(np.random.SFC64(list(key)))


def _chunks(rows: pd.DataFrame, idx: np.ndarray):
    """``(start, positions)`` chunks of about :data:`CHUNK` of the rows ``idx``, never
    splitting a configuration: its rows share one draw of everything but the noise (a curve,
    or a run's trajectory beside a query of the same configuration)."""
    codes = row_codes(rows.iloc[idx], CONFIG_KEY)[0]
    order = np.argsort(codes, kind="stable")
    idx, codes = idx[order], codes[order]
    a = 0
    while a < len(idx):
        b = min(a + CHUNK, len(idx))
        while b < len(idx) and codes[b] == codes[b - 1]:
            b += 1
        yield a, idx[a:b]
        a = b


def row_codes(frame: pd.DataFrame, cols) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``frame``, a code of its values in ``cols`` (equal values, equal codes;
    numbered 0, 1, ... in order of first appearance, as ``MultiIndex.factorize`` numbers them,
    at a fraction of its cost: one factorize per column), and each code's first row."""
    key = np.zeros(len(frame), np.int64)
    for c in cols:
        codes, uniq = pd.factorize(frame[c], use_na_sentinel=False)
        key = pd.factorize(key * (len(uniq) + 1) + codes)[0]
    return key, np.unique(key, return_index=True)[1]


def check_finite(group: str, rows: pd.DataFrame, terms: dict[str, np.ndarray]) -> None:
    """Refuse a prediction with a non-finite draw, naming the group, the term and a row."""
    for term, x in terms.items():
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.argmax(bad.reshape(len(x), -1).any(axis=1))) if x.shape[0] == len(rows) \
                else 0
            row = ", ".join(f"{c}={rows[c].iloc[i]:g}" for c in ("depth", "width", "n_train",
                                                                 "density"))
            raise UserError(f"{group}: the posterior's {term} is not finite in "
                            f"{int(bad.sum())} draw(s) at {row}; the fit cannot predict it "
                            "(refit, or check `bayes-prune fit`'s diagnostics)")
