"""Chains in separate modes are weighed by their leave-one-out predictive density (stacking):
a mode that predicts the data worse is dropped, and the posterior and its diagnostics are the
other mode's; modes that predict different points best are both kept, and the failure stands."""

import arviz as az
import numpy as np
import pymc as pm

from bayes_prune.diagnostics import diagnose
from bayes_prune.stacking import (
    KEEP_WEIGHT,
    drop_stray_modes,
    modes,
    stack_modes,
    stacked_text,
    stacking_weights,
)


def test_modes_split_chains_at_gaps_of_the_within_chain_spread():
    assert modes([2.61, -0.03, 2.57, -0.03], 0.3) == [[1, 3], [0, 2]]
    assert modes([0.0, 0.1, 0.05, 0.02], 0.1) == [[0, 1, 2, 3]]
    assert modes([0.0, 1.0, 2.0, 3.0], 0.4) == [[0], [1], [2], [3]]


def test_stacking_weights_follow_which_points_each_mode_predicts():
    rng = np.random.default_rng(0)
    good = rng.normal(-1.0, 0.3, 400)
    # one mode better everywhere: all the weight
    w = stacking_weights(np.stack([good - 0.5, good]))
    assert w[1] > 0.999
    # each mode better on half the points: both carry weight
    half = np.arange(400) < 200
    w = stacking_weights(np.stack([np.where(half, good, good - 4), np.where(half, good - 4, good)]))
    np.testing.assert_allclose(w, [0.5, 0.5], atol=0.02)
    # the optimum: no other point of the simplex scores higher
    most = np.arange(400) < 260
    lpd = np.stack([np.where(most, good, good - 2), np.where(most, good - 1, good)])
    w = stacking_weights(lpd)
    score = lambda v: np.log(v @ np.exp(lpd)).sum()  # noqa: E731
    assert 0.5 < w[0] < 0.95
    assert all(score(w) >= score(np.array([a, 1 - a])) - 1e-4 for a in np.linspace(0, 1, 41))


def _two_modes(y, scales, draws=300):
    """A model of ``y`` (normal, sd ``sigma``) and a trace whose chains sit at ``scales``."""
    with pm.Model() as model:
        sigma = pm.HalfNormal("sigma", 5.0)
        pm.Normal("y", 0.0, sigma, observed=y)
    rng = np.random.default_rng(1)
    post = np.array([s + 0.02 * rng.standard_normal(draws) for s in scales])
    trace = az.from_dict(posterior={"sigma": post},
                         sample_stats={"diverging": np.zeros(post.shape, bool)})
    return model, trace


def test_a_mode_that_predicts_worse_is_dropped_and_the_rest_is_diagnosed_alone():
    y = np.random.default_rng(0).normal(0.0, 1.0, 200)
    model, trace = _two_modes(y, [1.0, 3.0, 1.0, 3.0])
    before = diagnose(trace)
    assert not before["ok"] and before["worst"]["variable"] == "sigma"
    kept, stacked = drop_stray_modes(trace, model)
    after = diagnose(kept)
    assert stacked["modes"] == [[0, 2], [1, 3]] and stacked["keep"] == [0, 2]
    assert stacked["weights"][0] >= KEEP_WEIGHT
    assert stacked["elpd_loo"][0] - stacked["elpd_loo"][1] > 2 * stacked["diff_se"][1]
    assert kept.posterior.sizes["chain"] == 2 and after["ok"], after
    np.testing.assert_allclose(float(kept.posterior["sigma"].median()), 1.0, atol=0.01)
    text = stacked_text(stacked, after)
    assert "chains 0+2 alone" in text and "R-hat" in text


def test_a_trace_loses_a_stray_chain_before_its_divergences_are_counted():
    """The sampler's trace, as fit sees it after each sampling: a chain stuck in a mode that
    predicts far worse, diverging on every draw, leaves with its divergences, and the chains
    left are renumbered."""
    y = np.random.default_rng(0).normal(0.0, 1.0, 200)
    model, trace = _two_modes(y, [1.0, 1.0, 5.0, 1.0])
    trace.sample_stats["diverging"][2] = True
    out, stacked = drop_stray_modes(trace, model)
    assert stacked["keep"] == [0, 1, 3] and stacked["all_chains"]["divergences"] == 300
    assert list(out.posterior["chain"].values) == [0, 1, 2]
    assert int(out.sample_stats["diverging"].sum()) == 0
    np.testing.assert_array_equal(out.posterior["sigma"][2], trace.posterior["sigma"][3])
    # chains that meet every threshold are not looked at
    same, nothing = drop_stray_modes(trace.isel(chain=[0, 1, 3]), model)
    assert nothing is None


def test_a_lone_chain_is_never_the_posterior():
    """Of two chains, the better one alone would leave no R-hat: both are kept."""
    y = np.random.default_rng(0).normal(0.0, 1.0, 200)
    model, trace = _two_modes(y, [1.0, 3.0])
    kept, stacked = drop_stray_modes(trace, model)
    after = diagnose(kept)
    assert stacked["modes"] == [[0], [1]] and stacked["weights"][0] >= KEEP_WEIGHT
    assert stacked["keep"] is None and kept is trace and np.isfinite(after["max_rhat"])


def test_chains_of_one_mode_split_by_chance_are_all_kept():
    """Two sets of chains that predict alike: whatever weights the optimiser lands on, the
    elpd difference is within its noise, so nothing is dropped."""
    y = np.random.default_rng(0).normal(0.0, 1.0, 200)
    model, trace = _two_modes(y, [0.99, 1.01, 0.99, 1.01])
    before = {**diagnose(trace), "ok": False}
    before["worst"] = {**before.get("worst", {}), "variable": "sigma", "rhat": 1.5,
                       "chain_medians": [0.99, 1.01, 0.99, 1.01], "within_chain_sd": 0.002}
    stacked = stack_modes(trace, model, before)
    assert stacked["modes"] == [[0, 2], [1, 3]] and stacked["keep"] is None


def test_modes_that_each_predict_part_of_the_data_are_both_kept():
    # a mixture's two scales: the narrow mode predicts the inliers, the wide one the outliers
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.normal(0.0, 0.5, 150), rng.normal(0.0, 6.0, 50)])
    model, trace = _two_modes(y, [0.5, 6.0, 0.5, 6.0])
    before = diagnose(trace)
    kept, stacked = drop_stray_modes(trace, model)
    after = diagnose(kept)
    assert stacked["keep"] is None and max(stacked["weights"]) < KEEP_WEIGHT
    assert kept is trace and after == before and not after["ok"]
    assert "every chain is kept" in stacked_text(stacked, after)
