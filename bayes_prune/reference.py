"""The shipped reference posterior: every reference grid fitted at default settings.

It is fitted on everything measured: the four fitting grids and their four extrapolation sets
(their larger configurations), so that a query beyond the fitting grids borrows what was
measured there. The extrapolation sets stop being a test set here; ``bayes-prune evaluate``
scores them by fitting without them (``--holdout``, ``--leave-group-out``).

``bayes-prune query reference ...`` (and ``query``, ``design``, ``plot``, ``compare`` without a
posterior file) answer from ``bayes_prune/data/reference.nc``, so that a question can be asked
right after install, before any fit. The file is kept small: float32, :data:`DRAWS` draws
thinned evenly from the fit's chains, and only what queries read (``theta``, ``sigma``,
``sigma_seed``, ``tau``, ``log_eps_np_config``).

It records the SHA-256 of the grid it was fitted on (:func:`bayes_prune.grid.grid_hash`),
so a test can tell when the shipped CSVs changed and the file went stale; :func:`refresh`
(``bayes-prune reference refresh``) refits and rewrites it in one command.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError
from .posterior import FORMAT, REFERENCE, Posterior

__all__ = ["GRIDS", "DRAWS", "RESULTS", "grid_paths", "read_grid", "refresh", "load"]

GRIDS = tuple(f"{g}{part}" for part in ("", "_extrapolation")  # in experiments/results
              for g in ("mnist1d_mlp", "fashion_mlp", "mnist1d_cnn", "fashion_cnn"))
DRAWS = 1000  # what queries need: a 90 % HDI's ends move by ~1 % of its width at 1,000
# the reference grids of a source checkout (an installed package has only the posterior)
RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
KEEP = ("theta", "sigma", "sigma_seed", "tau", "log_eps_np_config")


def grid_paths(directory: str | Path | None = None) -> list[Path]:
    """The reference grids' CSVs in ``directory`` (default: the source checkout's
    ``experiments/results``), in :data:`GRIDS` order."""
    d = Path(directory) if directory else RESULTS
    paths = [d / f"{name}.csv" for name in GRIDS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"reference grid(s) not found: {', '.join(missing)} (a source "
                        "checkout has them in experiments/results; or give --grids DIR)")
    return paths


def read_grid(directory: str | Path | None = None):
    """The reference grids (:data:`GRIDS`) as one validated error grid, as the reference fit saw
    it."""
    from .grid import read_grids

    return read_grids(grid_paths(directory))


def load(path: str | Path = REFERENCE) -> Posterior:
    """The shipped reference posterior, read with h5py alone: xarray's import costs a
    ``bayes-prune query`` process about 0.5 s of its 1.5 s budget. Whatever h5py cannot read
    as a current reference file goes through :meth:`Posterior.load` and its messages."""
    import json

    try:
        import h5py

        with h5py.File(path, "r") as f:
            group = f["posterior"]
            meta = json.loads(group.attrs["bayes_prune"])
            draws = {v: group[v][()].reshape(-1, *group[v].shape[2:]) for v in KEEP}
    except Exception:  # not there, not HDF5, not this layout: the general reader says why
        return Posterior.load(path)
    if meta.get("format") != FORMAT or "reference" not in meta:
        return Posterior.load(path)
    return Posterior(draws, meta)


def refresh(directory: str | Path | None = None, out: str | Path = REFERENCE,
            seed: int = 0, progress: bool = True) -> Posterior:
    """Fit the reference grids at ``fit``'s default settings and write the thinned, float32
    posterior to ``out`` (default: the shipped file). Refuses a fit whose diagnostics fail."""
    import json

    import arviz as az

    from .fit import fit
    from .workers import sweep, temp_beside

    grid = read_grid(directory)
    names = grid_paths(directory)
    post = fit(grid, seed=seed, progress=progress,
               source=" + ".join(f"experiments/results/{p.name}" for p in names))
    if not post.diagnostics["ok"]:
        raise UserError(f"the reference fit failed its diagnostics ({post.diagnostics}); "
                        "the shipped file is left as it was")
    full = post.idata.posterior
    flat = full.stack(sample=("chain", "draw"))
    pick = np.linspace(0, flat.sizes["sample"] - 1, min(DRAWS, flat.sizes["sample"])).round()
    thin = flat.isel(sample=pick.astype(int))[list(KEEP)].drop_vars(["sample", "chain", "draw"])
    thin = thin.rename(sample="draw").expand_dims(chain=1).transpose("chain", "draw", ...)
    thin = thin.astype(np.float32)
    meta = json.loads(full.attrs["bayes_prune"])
    meta["reference"] = {"grids": list(GRIDS), "draws": int(thin.sizes["draw"]),
                         "thinned_from": int(flat.sizes["sample"])}
    thin.attrs["bayes_prune"] = json.dumps(meta)
    stats = post.idata.sample_stats[["diverging"]].stack(sample=("chain", "draw"))
    stats = stats.isel(sample=pick.astype(int)).drop_vars(["sample", "chain", "draw"])
    stats = stats.rename(sample="draw").expand_dims(chain=1).transpose("chain", "draw")
    out = Path(out)
    tmp = temp_beside(out)
    az.InferenceData(posterior=thin, sample_stats=stats).to_netcdf(
        str(tmp), compress=True, engine="h5netcdf")
    sweep(out)
    tmp.replace(out)
    return Posterior.load(out)
