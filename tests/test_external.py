"""The Bayesian model on real grids this toolkit did not make (``../shared/external``): every
grid CSV there fits with quick settings, with finite predictions at every one of its points, its
diagnostics stored, and what it could not identify said. Skipped where ``../shared`` is absent.
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_prune.fit import fit
from bayes_prune.grid import read_grid, validate

pytestmark = pytest.mark.slow
EXTERNAL = Path(__file__).resolve().parents[1].parent / "shared" / "external"
GRIDS = sorted(EXTERNAL.glob("*/*.grid.csv"))


@pytest.mark.skipif(not GRIDS, reason="../shared/external is absent")
@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_every_external_grid_fits_with_finite_predictions(path):
    grid = read_grid(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no numpy warning reaches a user
        warnings.filterwarnings("ignore", message="SAMPLER DIAGNOSTICS FAILED")
        # quick settings (finite predictions, not a converged posterior): at the small-grid
        # default 0.99 the trees of these grids run 2-3x longer
        post = fit(grid, draws=150, tune=200, chains=2, progress=False, source=path.name,
                   target_accept=0.9)
        draws = post.predict_draws(grid, band="prediction")
    assert np.isfinite(draws).all() and (draws > 0).all()
    assert {"max_rhat", "min_ess_bulk", "divergences", "ok"} <= set(post.diagnostics)
    assert np.isfinite(post.diagnostics["max_rhat"])
    table = post.coefficient_table()
    assert set(table["identified"]) <= {"data", "partly", "prior"}
    # an axis with one value leaves its exponent on the prior (in a grid of one group: with
    # several, the other groups inform it through the pooling); with these short chains (an
    # ESS of tens) the interval's width is noisy, so: never called identified by the data
    groups = grid.groupby(["arch", "task"])
    for (arch, task), g in groups if groups.ngroups == 1 else ():
        rows = table[(table["arch"] == arch) & (table["task"] == task)].set_index("coef")
        if g["width"].nunique() == 1:
            assert rows.loc["psi", "identified"] != "data"
        if g["depth"].nunique() == 1:
            assert rows.loc["phi", "identified"] != "data"
    assert set(post.meta["prior_predictive"]) == set(
        f"{a}/{t}" for a, t in grid[["arch", "task"]].drop_duplicates().itertuples(index=False))


@pytest.mark.skipif(not GRIDS, reason="../shared/external is absent")
def test_runs_without_a_dense_point_take_it_from_the_dense_law():
    folder = EXTERNAL / "bigsparse-frantar2023"
    grid = validate(pd.concat([read_grid(folder / "vit.grid.csv"),
                               read_grid(folder / "vit.holdout.csv")], ignore_index=True))
    lacking = grid.groupby(["depth", "width", "n_train", "seed"])["round"].min() > 0
    assert lacking.any()  # the upstream data has sizes that were never trained dense
    # runs_mode auto: the runs with a dense point are conditioned on it, and only those
    # without one are sampled (the default samples every run's: every other test's fits)
    post = fit(grid, draws=100, tune=150, chains=2, progress=False, discrepancy=False,
               target_accept=0.9, runs_mode="auto")
    assert post.idata.posterior["log_eps_np_run"].shape[-1] == int(lacking.sum())
    keys = lacking[lacking].index.to_frame(index=False).drop(columns="seed")
    rows = keys.assign(arch="vit", task="jft4b", density=1.0)
    band = post.summary(rows)[["lower", "median", "upper"]].to_numpy()
    assert np.isfinite(band).all() and (band > 0).all() and (band < 1).all()
