"""The least-squares baseline recovers known coefficients (bayes_prune.lsq)."""

import numpy as np
import pytest

from bayes_prune import lsq
from bayes_prune.synthetic import default_truths, simulate_grid

SMALL = dict(depths=(2, 4), widths=(16, 32, 64, 128), n_trains=(1000, 4000), seeds=(0,))


def _truth(fit):
    return default_truths()[(fit.key["arch"], fit.key["task"])].law


def test_joint_recovers_every_coefficient_noise_free():
    grid = simulate_grid(seed_sd=0.0, rel_noise=0.0, n_test=None, **SMALL)
    fits = lsq.fit(grid, form="joint")
    assert len(fits) == 4
    for f in fits:
        truth = _truth(f).as_dict()
        for name, value in f.law.as_dict().items():
            assert value == pytest.approx(truth[name], rel=0.05), (f.key, name)
        assert abs(f.delta_mean) < 1e-3 and f.delta_std < 5e-3


def test_delta_std_sits_at_the_injected_noise():
    # Each point's delta carries its own noise and, through eps_np, its run's dense point's:
    # std lies between sigma and sigma * sqrt(2).
    grid = simulate_grid(seed_sd=0.0, rel_noise=0.05, n_test=None, rng=3, **SMALL)
    for f in lsq.fit(grid, form="joint"):
        assert 0.045 < f.delta_std < 0.05 * np.sqrt(2)
        assert abs(f.delta_mean) < 0.02


def test_single_form_per_network():
    grid = simulate_grid(seed_sd=0.0, rel_noise=0.0, n_test=None, depths=(2,), widths=(32,),
                         n_trains=(1000,), seeds=(0, 1))
    fits = lsq.fit(grid, form="single")
    assert len(fits) == 4  # one network per group: seeds are pooled
    for f in fits:
        truth = _truth(f)
        # Eq. 1's p is the joint law's p' expressed in density: p = p' / (l^phi w^psi)
        p = truth.p_prime / (2 ** truth.phi * 32 ** truth.psi)
        assert f.law.p_prime == pytest.approx(p, rel=0.05)
        assert f.law.gamma == pytest.approx(truth.gamma, rel=0.05)
        out = f.to_json()
        assert set(out["coefficients"]) == {"gamma", "p", "eps_up"}
        assert (out["depth"], out["width"], out["n_train"]) == (2, 32, 1000)


def test_every_run_needs_its_dense_point():
    grid = simulate_grid(depths=(2,), widths=(16,), n_trains=(1000,), seeds=(0,), rounds=5)
    with pytest.raises(ValueError, match="no dense point"):
        lsq.fit(grid[grid["round"] > 0])
