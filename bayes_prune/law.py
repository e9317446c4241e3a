"""The pruning scaling law of Rosenfeld et al. (ICML 2021), written once.

Notation: ``d`` density (fraction of prunable weights left, in (0, 1]), ``l`` depth, ``w`` width,
``n`` training-set size, ``eps_np`` the dense (unpruned) error of that network, ``eps_up`` the
high-error plateau, ``p`` the transition density, ``gamma`` the slope of the power-law region.

Eq. 1 (one network), real form::

    eps(d) = eps_np * [(d^2 + p^2 (eps_up/eps_np)^(2/gamma)) / (d^2 + p^2)]^(gamma/2)

computed in log space (``logaddexp``) so that tiny densities neither overflow nor lose precision::

    log eps = log eps_np + gamma/2 * [logaddexp(2 log d, 2 log p + 2/gamma log(eps_up/eps_np))
                                      - logaddexp(2 log d, 2 log p)]

Joint form: ``d`` is replaced by the invariant ``m* = l^phi w^psi d`` and ``p`` by a global
``p'``. The dense error of a configuration nobody trained comes from the envelope of
Rosenfeld et al. (ICLR 2020)::

    eps_tilde(m, n) = a n^-alpha + b m^-beta + c_inf
    eps_np = eps0 * eps_tilde / sqrt(eps_tilde^2 + eta^2)        (eps0: random-guess error)

Every function takes the array namespace ``xp`` (``numpy`` by default, ``pytensor.tensor`` in
the PyMC model) so least squares, the likelihood, queries and plots evaluate the same code.
Inputs broadcast against each other; outputs have the broadcast shape.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "PruneLaw",
    "DenseLaw",
    "log_eq1",
    "slope_eq1",
    "log_eq1_partials",
    "log_invariant",
    "log_error",
    "error",
    "log_dense_error",
    "dense_error",
    "log_dense_error_partials",
    "binomial_log_var",
]


@dataclass(frozen=True)
class PruneLaw:
    """Coefficients of the joint pruning law (arrays or scalars, numpy or pytensor).

    Attributes
    ----------
    gamma : slope of the power-law region, > 0 (log-log slope of error vs density is -gamma).
    p_prime : transition point in units of the invariant ``m* = l^phi w^psi d``, > 0.
        With ``phi = psi = 0`` it is the transition density ``p`` of one network (Eq. 1).
    eps_up : high-error plateau reached as ``d -> 0``, in (0, 1].
    phi, psi : exponents of depth and width in the invariant.
    """

    gamma: Any
    p_prime: Any
    eps_up: Any
    phi: Any = 0.0
    psi: Any = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class DenseLaw:
    """Coefficients of the dense-error envelope ``eps_tilde = a n^-alpha + b m^-beta + c_inf``,
    held in log space (``log_a``, ``log_b``, ``log_c_inf``): a term that a grid cannot inform
    (one n_train, say) may carry a coefficient far beyond a float's range, while its
    contribution at the grid stays finite (:func:`log_dense_error` never exponentiates it).

    ``eta`` is the width of the transition from the power law to the random-guess error ``eps0``
    (``eps_np = eps0 * eps_tilde / sqrt(eps_tilde^2 + eta^2)``). ``alpha``, ``beta``, ``eta``
    are >= 0. :meth:`of` builds one from the natural-scale coefficients.
    """

    log_a: Any
    alpha: Any
    log_b: Any
    beta: Any
    log_c_inf: Any
    eta: Any

    @classmethod
    def of(cls, a, alpha, b, beta, c_inf, eta, xp=np) -> DenseLaw:
        """From ``a, alpha, b, beta, c_inf, eta`` on their natural scale (all > 0)."""
        return cls(xp.log(a), alpha, xp.log(b), beta, xp.log(c_inf), eta)

    def as_dict(self) -> dict[str, Any]:
        """``a, alpha, b, beta, c_inf, eta`` on their natural scale (numpy; a coefficient beyond
        a float's range comes out as ``inf``, without a warning)."""
        with np.errstate(over="ignore"):
            return {"a": np.exp(self.log_a), "alpha": self.alpha, "b": np.exp(self.log_b),
                    "beta": self.beta, "c_inf": np.exp(self.log_c_inf), "eta": self.eta}


def _logaddexp(xp):
    """``xp.logaddexp``; for numpy, ``max + log(1 + exp(-|a - b|))``, which is exact to a unit
    in the last place (``log`` where numpy's ufunc uses the slower ``log1p``: the term it
    drops is below the precision of the sum) and about twice as fast on the query path's
    (configurations x draws) arrays."""
    if xp is not np:
        return xp.logaddexp

    def lae(a, b):
        diff = np.subtract(a, b)
        if np.ndim(diff) == 0:
            return np.logaddexp(a, b)
        out = np.maximum(a, b)
        np.abs(diff, out=diff)
        np.negative(diff, out=diff)
        np.exp(diff, out=diff)
        diff += 1
        np.log(diff, out=diff)
        out += diff
        return out

    return lae


def log_eq1(log_d, log_eps_np, log_eps_up, gamma, log_p, xp=np):
    """Log of Eq. 1 for one network, every input already in log space except ``gamma``."""
    two_log_d, lae = 2.0 * log_d, _logaddexp(xp)
    upper = lae(two_log_d, 2.0 * log_p + (2.0 / gamma) * (log_eps_up - log_eps_np))
    lower = lae(two_log_d, 2.0 * log_p)
    return log_eps_np + 0.5 * gamma * (upper - lower)


def slope_eq1(log_d, log_eps_np, log_eps_up, gamma, log_p, xp=np):
    """The local slope ``d log eps / d log d`` of :func:`log_eq1` (same inputs): 0 on the two
    plateaus, ``-gamma`` deep in the power-law region. In the joint form, ``log d`` is
    ``log m*``; the slope turns a shift of the invariant into a shift of the log error."""
    half_up = log_p + (log_eps_up - log_eps_np) / gamma
    return 0.5 * gamma * (xp.tanh(log_d - half_up) - xp.tanh(log_d - log_p))


def log_eq1_partials(log_d, log_eps_np, log_eps_up, gamma, log_p) -> dict[str, np.ndarray]:
    """The partial derivatives of :func:`log_eq1` (numpy), for least squares' Jacobian.

    With ``U = logaddexp(2 log d, 2 log p + 2/gamma (log eps_up - log eps_np))``, ``L =
    logaddexp(2 log d, 2 log p)`` and ``s_U = exp(2 log d - U)``, ``s_L = exp(2 log d - L)``
    (the weights of ``2 log d`` in each sum): ``d/d log d = gamma (s_U - s_L)`` (the local
    slope, :func:`slope_eq1`), ``d/d log p = -gamma (s_U - s_L)``, ``d/d log eps_up = 1 - s_U``,
    ``d/d gamma = (U - L)/2 - (1 - s_U)(log eps_up - log eps_np)/gamma``. Returns
    ``{"log_d", "log_p", "log_eps_up", "gamma"}``, each of the inputs' broadcast shape.
    """
    lae = _logaddexp(np)
    two_log_d = 2.0 * np.asarray(log_d, float)
    ratio = np.subtract(log_eps_up, log_eps_np)
    upper = lae(two_log_d, 2.0 * log_p + (2.0 / gamma) * ratio)
    lower = lae(two_log_d, 2.0 * np.asarray(log_p, float))
    s_up, s_low = np.exp(two_log_d - upper), np.exp(two_log_d - lower)
    slope = gamma * (s_up - s_low)
    return {"log_d": slope, "log_p": -slope, "log_eps_up": 1.0 - s_up,
            "gamma": 0.5 * (upper - lower) - (1.0 - s_up) * ratio / gamma}


def log_invariant(density, depth, width, phi, psi, xp=np):
    """``log m* = log d + phi log l + psi log w`` (the joint law's single variable)."""
    return xp.log(density) + phi * xp.log(depth) + psi * xp.log(width)


def log_error(density, depth, width, eps_np, law: PruneLaw, xp=np):
    """Log of the joint law's predicted error at ``density`` for a network of dense error
    ``eps_np``. With ``law.phi = law.psi = 0`` this is Eq. 1 with ``p = law.p_prime``."""
    log_m = log_invariant(density, depth, width, law.phi, law.psi, xp=xp)
    return log_eq1(log_m, xp.log(eps_np), xp.log(law.eps_up), law.gamma, xp.log(law.p_prime), xp=xp)


def error(density, depth, width, eps_np, law: PruneLaw, xp=np):
    """The joint law's predicted error (``exp`` of :func:`log_error`)."""
    return xp.exp(log_error(density, depth, width, eps_np, law, xp=xp))


def log_dense_error(params, n_train, dense: DenseLaw, eps0, xp=np):
    """Log dense error of a network with ``params`` weights trained on ``n_train`` examples,
    from the envelope of Rosenfeld et al. (ICLR 2020); ``eps0`` is the random-guess error."""
    lae = _logaddexp(xp)
    log_tilde = lae(lae(dense.log_a - dense.alpha * xp.log(n_train),
                        dense.log_b - dense.beta * xp.log(params)), dense.log_c_inf)
    return xp.log(eps0) + log_tilde - 0.5 * lae(2.0 * log_tilde, 2.0 * xp.log(dense.eta))


def log_dense_error_partials(params, n_train, dense: DenseLaw) -> dict[str, np.ndarray]:
    """The partial derivatives of :func:`log_dense_error` (numpy), for least squares' Jacobian.

    With ``T = log eps_tilde`` and the shares ``w_a = a n^-alpha / eps_tilde``, ``w_b = b
    m^-beta / eps_tilde``, ``w_c = c_inf / eps_tilde`` of its terms, and ``w_eta = eta^2 /
    (eps_tilde^2 + eta^2)``: ``d/dT = w_eta``, so ``d/d log a = w_eta w_a``, ``d/d alpha =
    -w_eta w_a log n``, the same for ``b, beta`` with ``log m``, ``d/d log c_inf = w_eta w_c``,
    ``d/d log eta = -w_eta``. Returns ``{"log_a", "alpha", "log_b", "beta", "log_c_inf",
    "log_eta"}``.
    """
    lae = _logaddexp(np)
    log_n, log_m = np.log(n_train), np.log(params)
    term_a, term_b = dense.log_a - dense.alpha * log_n, dense.log_b - dense.beta * log_m
    log_tilde = lae(lae(term_a, term_b), np.full_like(term_a, dense.log_c_inf))
    two_log_eta = np.full_like(log_tilde, 2.0 * np.log(dense.eta))
    log_norm = 0.5 * lae(2.0 * log_tilde, two_log_eta)
    w_eta = np.exp(two_log_eta - 2.0 * log_norm)
    w_a, w_b = w_eta * np.exp(term_a - log_tilde), w_eta * np.exp(term_b - log_tilde)
    return {"log_a": w_a, "alpha": -w_a * log_n,
            "log_b": w_b, "beta": -w_b * log_m,
            "log_c_inf": w_eta * np.exp(dense.log_c_inf - log_tilde), "log_eta": -w_eta}


# the degrees of freedom of the point noise of ``fit --likelihood student``: the model's
# likelihood and the prediction band's noise both
STUDENT_NU = 4.0


def binomial_log_var(eps, n_test):
    """Variance of a measured log error from the test set alone: a binomial proportion
    ``eps`` of ``n_test`` examples, on the log scale (delta method), ``(1 - eps) / (n eps)``."""
    return (1 - eps) / (n_test * eps)


def dense_error(params, n_train, dense: DenseLaw, eps0, xp=np):
    """The dense-error envelope (``exp`` of :func:`log_dense_error`)."""
    return xp.exp(log_dense_error(params, n_train, dense, eps0, xp=xp))
