"""What a posterior says about the law's coefficients: how much the data narrowed each
(:func:`identification`), their medians and HDIs (:func:`coefficient_table`), and the
probability that one group's coefficient exceeds another's (:func:`compare`). Numpy only;
:class:`bayes_prune.posterior.Posterior` answers them as methods, and :func:`hdi` serves every
band of its queries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .coords import pooling_cov
from .errors import UserError

__all__ = ["coefficient_table", "compare", "hdi", "identification"]


def hdi(draws: np.ndarray, level: float, presorted: bool = False
        ) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density interval of each row of ``draws`` ``(rows, n)``: the narrowest window
    holding ``ceil(level n)`` sorted draws. Returns ``(lower, upper)``, each ``(rows,)``."""
    if not 0 < level < 1:
        raise UserError(f"level must be in (0, 1), got {level}")
    x = draws if presorted else np.sort(draws, axis=1)
    n = x.shape[1]
    k = max(int(np.ceil(level * n)), 1)
    widths = x[:, k - 1:] - x[:, : n - k + 1]
    i = np.argmin(widths, axis=1)
    rows = np.arange(x.shape[0])
    return x[rows, i], x[rows, i + k - 1]


def identification(post, level: float = 0.9) -> pd.DataFrame:
    """How much the data narrowed each fitted group's coefficients: per group and
    coefficient of :meth:`bayes_prune.posterior.Posterior.natural`, ``ratio`` = the width of
    the posterior's central ``level`` interval over the prior's (on the log scale for
    positive coefficients), and ``identified``: ``data`` (ratio <= 0.5), ``prior`` (>= 0.9:
    the grid cannot inform it, e.g. ``psi`` when every network has one width, or ``eps_up``
    when no run reaches the high plateau) or ``partly``."""
    pri = post.meta["priors"]
    rng = np.random.default_rng(0)
    rows = []
    for arch, task in post._group_index:
        sd = np.sqrt(pooling_cov([arch], [task], *post._prior_scales(pri))[:, 0, 0])
        mean = np.array([pri["mu"]["mean"][c] for c in post.coefs])
        z = mean + sd * rng.standard_normal((4000, len(post.coefs)))
        prior = post._natural({c: z[:, i] for i, c in enumerate(post.coefs)}, arch, task)
        for name, d in post.natural(arch, task).items():
            ratio = _width(d, level) / max(_width(prior[name], level), 1e-300)
            rows.append({"arch": arch, "task": task, "coef": name, "ratio": ratio,
                         "identified": "data" if ratio <= 0.5 else
                         "prior" if ratio >= 0.9 else "partly"})
    return pd.DataFrame(rows)


def coefficient_table(post, level: float = 0.94) -> pd.DataFrame:
    """One row per fitted group and coefficient: posterior median and HDI at ``level``, and
    whether the data identify it (``identified``, :func:`identification`)."""
    rows = []
    for arch, task in post._group_index:
        for name, d in post.natural(arch, task).items():
            lo, hi = hdi(d[None, :], level)
            rows.append({"arch": arch, "task": task, "coef": name,
                         "median": float(np.median(d)), "lower": float(lo[0]),
                         "upper": float(hi[0]), "level": level})
    ident = post.identification()[["arch", "task", "coef", "identified"]]
    return pd.DataFrame(rows).merge(ident, on=["arch", "task", "coef"], how="left")


def compare(post, coef: str, a: tuple[str, str], b: tuple[str, str],
            level: float = 0.94) -> dict:
    """``P(coef_A > coef_B)`` under the posterior, with both medians and HDIs: ``a``, ``b``
    are (arch, task) pairs, ``coef`` a name of
    :meth:`bayes_prune.posterior.Posterior.natural`."""
    da, db = post.natural(*a), post.natural(*b)
    if coef not in da:
        raise UserError(f"unknown coefficient {coef!r}; choose one of {', '.join(da)}")
    x, y = da[coef], db[coef]
    for side, d in ((a, x), (b, y)):
        if not np.isfinite(d).all():
            raise UserError(f"{'/'.join(side)}: {coef} has non-finite draws (beyond a "
                            "float's range: the grid does not inform it; see the fit's "
                            "'identified' column); compare another coefficient")
    (la,), (ha,) = hdi(x[None, :], level)
    (lb,), (hb,) = hdi(y[None, :], level)
    return {"coef": coef, "a": "/".join(a), "b": "/".join(b),
            "median_a": float(np.median(x)), "lower_a": float(la), "upper_a": float(ha),
            "median_b": float(np.median(y)), "lower_b": float(lb), "upper_b": float(hb),
            "level": level, "p_a_greater": float(np.mean(x > y))}


def _width(draws: np.ndarray, level: float) -> float:
    """Width of the central ``level`` interval of ``draws``, of their logs if all positive."""
    x = np.log(draws) if np.all(draws > 0) else draws
    lo, hi = np.quantile(x[np.isfinite(x)], [(1 - level) / 2, (1 + level) / 2])
    return float(hi - lo)
