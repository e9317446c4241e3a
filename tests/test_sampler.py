"""Backend choice and sampling to an ESS target (bayes_prune.sampler)."""

import arviz as az
import numpy as np
import pytest

from bayes_prune.errors import UserError
from bayes_prune.sampler import Target, _truncate, backend_of, precision_of


def test_backend_and_precision_resolve_and_refuse_with_the_allowed_values():
    assert backend_of("numba") == "numba"
    assert backend_of("auto") in ("jax", "numba")
    assert precision_of("jax", "auto") == "float64"
    assert precision_of("jax", "float32") == "float32"
    assert precision_of("numba", "auto") == "float64"
    with pytest.raises(UserError, match="choose one of auto, jax, numba"):
        backend_of("stan")
    with pytest.raises(UserError, match="needs --backend jax"):
        precision_of("numba", "float32")
    with pytest.raises(UserError, match="--device cuda"):
        backend_of("numba", "cuda")


def test_device_cuda_without_a_gpu_says_so_in_one_line():
    pytest.importorskip("jax")
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is here")
    with pytest.raises(UserError, match="JAX sees no CUDA device"):
        backend_of("auto", "cuda")


def test_chains_are_cut_to_the_shortest_finished_one():
    x = np.random.default_rng(0).normal(size=(3, 10, 2))
    x[1, 7:] = np.nan  # nutpie pads a chain still running with NaN
    x[2, 9:] = np.nan
    out = _truncate(az.from_dict(posterior={"a": x}))
    assert out.posterior.sizes["draw"] == 7 and np.isfinite(out.posterior["a"]).all()


@pytest.mark.slow
def test_fit_stops_at_the_ess_target_on_a_block_and_is_reproducible():
    from bayes_prune.fit import fit
    from bayes_prune.synthetic import default_truths, simulate_grid

    truths = dict(list(default_truths().items())[:2])
    grid = simulate_grid(truths, depths=(2, 4), widths=(16, 64), n_trains=(1000, 4000),
                         seeds=(0, 1), rounds=8, prune_fraction=0.6, rel_noise=0.03,
                         n_test=2000, rng=3)
    runs = [fit(grid, draws=1000, tune=300, chains=4, seed=2, progress=False,
                discrepancy=False, ess_target=100.0) for _ in range(2)]
    s = runs[0].meta["settings"]
    assert s["stopped"] == "target" and s["draws"] % Target().block == 0
    assert s["draws"] < 1000 and runs[0].diagnostics["min_ess_bulk"] >= 100
    np.testing.assert_array_equal(runs[0].draws["theta"], runs[1].draws["theta"])
