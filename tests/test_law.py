"""The law against hand-computed values and its limits (see bayes_prune.law)."""

import numpy as np
import pytest

from bayes_prune.law import (
    DenseLaw,
    PruneLaw,
    dense_error,
    error,
    log_dense_error,
    log_dense_error_partials,
    log_eq1,
    log_eq1_partials,
    log_error,
    slope_eq1,
)


def test_eq1_hand_computed():
    # eps = 0.1 * [(0.1^2 + 0.1^2 * 9^(2/2)) / (0.1^2 + 0.1^2)]^(2/2) = 0.1 * 0.10 / 0.02 = 0.5
    law = PruneLaw(gamma=2.0, p_prime=0.1, eps_up=0.9)
    assert error(0.1, 1, 1, 0.1, law) == pytest.approx(0.5, rel=1e-12)
    # gamma = 1: 0.1 * sqrt((0.04 + 0.01 * 64) / (0.04 + 0.01)) = 0.1 * sqrt(13.6)
    law = PruneLaw(gamma=1.0, p_prime=0.1, eps_up=0.8)
    assert error(0.2, 1, 1, 0.1, law) == pytest.approx(0.1 * np.sqrt(13.6), rel=1e-12)


def test_dense_envelope_hand_computed():
    # eps_tilde = 100^-0.5 + 400^-0.5 + 0.05 = 0.2; eps_np = 0.9 * 0.2 / sqrt(0.2^2 + 0.15^2)
    dense = DenseLaw.of(a=1.0, alpha=0.5, b=1.0, beta=0.5, c_inf=0.05, eta=0.15)
    assert dense_error(400, 100, dense, 0.9) == pytest.approx(0.72, rel=1e-12)


LAW = PruneLaw(gamma=1.7, p_prime=0.03, eps_up=0.9)


def test_plateaus():
    assert error(1.0, 1, 1, 0.05, PruneLaw(1.7, 1e-6, 0.9)) == pytest.approx(0.05, rel=1e-6)
    assert error(1e-12, 1, 1, 0.05, LAW) == pytest.approx(0.9, rel=1e-6)


def test_power_law_slope_is_minus_gamma():
    # Between the plateaus (eps_np << eps << eps_up) the log-log slope is -gamma.
    law = PruneLaw(gamma=1.7, p_prime=1e-3, eps_up=0.9)
    eps_np = 1e-9  # far below eps_up, so the power-law region spans many decades
    d = np.array([0.1, 0.101])
    slope = np.diff(log_error(d, 1, 1, eps_np, law)) / np.diff(np.log(d))
    assert slope[0] == pytest.approx(-1.7, rel=1e-3)


def test_monotone_in_density():
    d = np.logspace(-8, 0, 400)
    eps = error(d, 3, 64, 0.08, PruneLaw(2.2, 0.5, 0.88, phi=0.4, psi=1.1))
    assert np.all(np.diff(eps) < 0)
    assert np.all((eps > 0.08) & (eps < 0.88))


def test_invariant_collapses_configurations():
    # Equal m* = l^phi w^psi d and equal eps_np give equal error.
    law = PruneLaw(gamma=2.0, p_prime=0.7, eps_up=0.9, phi=0.5, psi=1.2)
    l1, w1, d1 = 4.0, 32.0, 0.05
    l2, w2 = 2.0, 64.0
    d2 = d1 * (l1 / l2) ** 0.5 * (w1 / w2) ** 1.2
    assert error(d1, l1, w1, 0.1, law) == pytest.approx(error(d2, l2, w2, 0.1, law), rel=1e-12)


def test_log_space_is_finite_at_tiny_densities():
    d = np.array([1e-300, 1e-200, 1e-30])
    out = log_error(d, 2, 16, 1e-8, PruneLaw(gamma=0.05, p_prime=1e-3, eps_up=0.9))
    assert np.all(np.isfinite(out))
    assert np.exp(out[0]) == pytest.approx(0.9, rel=1e-9)


def test_broadcasts_over_draws_and_configurations():
    gamma = np.array([1.5, 2.0, 2.5])[:, None]  # draws x 1
    law = PruneLaw(gamma=gamma, p_prime=0.5, eps_up=0.9, phi=0.3, psi=1.0)
    out = error(np.array([1.0, 0.1, 0.01, 0.001]), 2, 32, 0.1, law)
    assert out.shape == (3, 4)


def test_numpy_and_pytensor_evaluate_the_same_code():
    pt = pytest.importorskip("pytensor.tensor")
    rng = np.random.default_rng(0)
    d = np.exp(rng.uniform(np.log(1e-5), 0, 50))
    depth, width = rng.integers(1, 9, 50).astype(float), rng.integers(8, 600, 50).astype(float)
    eps_np = rng.uniform(0.01, 0.3, 50)
    # coefficients as float64 arrays, as the model passes them (a bare Python float may become
    # a float32 constant in pytensor)
    law = PruneLaw(*map(np.float64, (1.7, 0.4, 0.85, 0.6, 1.1)))
    dense = DenseLaw.of(*map(np.float64, (1.2, 0.3, 2.5, 0.45, 0.02, 0.9)))
    params, n = rng.uniform(1e3, 1e6, 50), rng.uniform(500, 60000, 50)
    np.testing.assert_allclose(log_error(d, depth, width, eps_np, law, xp=pt).eval(),
                               log_error(d, depth, width, eps_np, law), rtol=0, atol=1e-10)
    eps0 = np.float64(0.9)
    np.testing.assert_allclose(dense_error(params, n, dense, eps0, xp=pt).eval(),
                               dense_error(params, n, dense, eps0), rtol=0, atol=1e-10)


def test_variant_coefficients_are_zero_at_the_paper_law_and_centre():
    from bayes_prune.coords import Centres, prune_law

    c = Centres(log_depth=np.log(2.0), log_width=np.log(32.0), log_n=np.log(2000.0),
                log_params=np.log(1e4), log_err_pivot=np.log(0.3))
    base = {"log_gamma": 0.3, "log_p_centre": -2.0, "phi": 0.5, "psi": 1.0, "logit_eps_up": 2.0,
            "log_dense": -1.5, "logit_share_a": 0.0, "logit_share_b": 0.0,
            "log_slope_n": -1.5, "log_slope_m": -2.0}
    depth, width, n = np.array([1.0, 2.0, 8.0]), np.array([8.0, 32.0, 256.0]), np.array(
        [500.0, 2000.0, 8000.0])
    p0 = prune_law(base, c, 0.9)
    flat = prune_law({**base, "kappa_gamma_n": 0.0, "phi2": 0.0, "psi2": 0.0}, c, 0.9,
                     n_train=n, depth=depth, width=width)
    np.testing.assert_allclose(flat.p_prime, p0.p_prime)
    np.testing.assert_allclose(flat.gamma, p0.gamma)
    bent = prune_law({**base, "kappa_gamma_n": 0.4, "phi2": 0.3, "psi2": 0.2}, c, 0.9,
                     n_train=n, depth=depth, width=width)
    # at the centre (depth 2, width 32, n 2000) nothing changes; away from it p' falls as
    # the curvature lifts log m*, and gamma follows n
    assert bent.gamma[1] == pytest.approx(float(p0.gamma))
    assert bent.p_prime[1] == pytest.approx(float(p0.p_prime))
    np.testing.assert_allclose(np.log(bent.gamma), 0.3 + 0.4 * np.log(n / 2000.0))
    curv = 0.5 * (0.3 * np.log(depth / 2) ** 2 + 0.2 * np.log(width / 32) ** 2)
    log_up = np.log(0.3 + 0.6 / (1 + np.exp(-2.0)))  # eps_up between the pivot and eps0
    log_p0 = -2.0 - (log_up - np.log(0.3)) / bent.gamma + 0.5 * np.log(2.0) + np.log(32.0)
    np.testing.assert_allclose(np.log(bent.p_prime), log_p0 - curv)


def test_slope_of_eq1_is_its_derivative_zero_on_the_plateaus_and_minus_gamma_between():
    x = np.linspace(-25.0, 15.0, 401)
    args = (np.log(1e-4), np.log(0.9), 1.7, np.log(0.05))
    numeric = (log_eq1(x + 1e-6, *args) - log_eq1(x - 1e-6, *args)) / 2e-6
    np.testing.assert_allclose(slope_eq1(x, *args), numeric, atol=1e-6)
    assert abs(slope_eq1(x[0], *args)) < 1e-4 and abs(slope_eq1(x[-1], *args)) < 1e-4
    # eps_up / eps_np = 9,000: a power law long enough to reach its slope -gamma
    assert slope_eq1(x, *args).min() == pytest.approx(-1.7, rel=0.01)


def _central_difference(f, values: dict, name: str, h: float = 1e-6):
    up, down = dict(values), dict(values)
    up[name] = values[name] + h
    down[name] = values[name] - h
    return (f(**up) - f(**down)) / (2 * h)


def test_partials_of_eq1_are_its_derivatives():
    """The oracle for least squares' analytic Jacobian: central differences of log_eq1, from
    the high plateau through the power law to the low one, for eps_up on either side."""
    x = np.linspace(-20.0, 5.0, 201)
    for log_up in (np.log(0.9), np.log(0.03)):
        values = {"log_d": x, "log_eps_np": np.log(0.05), "log_eps_up": log_up, "gamma": 1.7,
                  "log_p": np.log(0.02)}
        part = log_eq1_partials(**values)
        for name in ("log_d", "log_p", "log_eps_up", "gamma"):
            numeric = _central_difference(log_eq1, values, name)
            np.testing.assert_allclose(part[name], numeric, atol=1e-6, err_msg=name)
        assert np.all(np.isfinite(list(part.values())))


def test_partials_of_the_dense_envelope_are_its_derivatives():
    params = np.geomspace(1e3, 1e8, 40)
    n = np.geomspace(100, 60_000, 40)[::-1]
    theta = {"log_a": 1.2, "alpha": 0.4, "log_b": 0.8, "beta": 0.3, "log_c_inf": -4.0,
             "log_eta": np.log(0.3)}

    def f(**t):
        law = DenseLaw(t["log_a"], t["alpha"], t["log_b"], t["beta"], t["log_c_inf"],
                       np.exp(t["log_eta"]))
        return log_dense_error(params, n, law, 0.9)

    part = log_dense_error_partials(params, n, DenseLaw(1.2, 0.4, 0.8, 0.3, -4.0, 0.3))
    for name in theta:
        np.testing.assert_allclose(part[name], _central_difference(f, theta, name),
                                   atol=1e-6, err_msg=name)
