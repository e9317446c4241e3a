"""Reading a saved posterior (ArviZ InferenceData in NetCDF) and refusing what is not a whole one.

A file written by ``bayes-prune fit`` holds a ``posterior`` group (the draws, and the toolkit's
metadata as the JSON attribute ``bayes_prune``) and a ``sample_stats`` group (the sampler's
statistics: ``diverging`` and the rest), and its metadata holds the diagnostics the fit checked.
A file missing any of these (a copy cut short, a temporary file taken for the output, someone
else's NetCDF) is refused with one line naming the file and what is missing; nothing is read
past the first problem. The query path reads it with xarray and h5netcdf only (no pymc).
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from .errors import UserError

__all__ = ["read", "META", "DIAGNOSTICS"]

META = ("settings", "centres", "groups", "configs", "archs", "tasks", "diagnostics")
DIAGNOSTICS = ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "ok")
_HINT = "write one with `bayes-prune fit`"


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _groups(path: Path) -> set[str]:
    import h5netcdf

    with h5netcdf.File(path, "r") as f:
        return set(f.groups)


def _group(path: Path, name: str):
    import xarray as xr

    with xr.open_dataset(path, group=name, engine="h5netcdf") as ds:
        return ds.load()


def read(path: str | Path):
    """``(posterior, sample_stats, meta)`` of the posterior file at ``path``: the two groups as
    xarray Datasets, loaded, and the toolkit's metadata dict. Raises :class:`UserError`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a posterior file; {_HINT}")
    if not path.is_file():
        raise UserError(f"{path}: no such posterior file")
    # A broken HDF5 file makes h5netcdf's finalizer print a traceback ('Exception ignored in')
    # whenever its half-opened File is collected: collect it here, with that report silenced,
    # and raise the one-line error only once the failed attempt is gone.
    hook, sys.unraisablehook, failed = sys.unraisablehook, lambda *_: None, None
    try:
        groups = _groups(path)
        if {"posterior", "sample_stats"} <= groups:
            post, stats = _group(path, "posterior"), _group(path, "sample_stats")
    except Exception as exc:  # truncated, not HDF5, an unreadable group...
        failed = _first_line(exc)
    finally:
        gc.collect()
        sys.unraisablehook = hook
    if failed:
        raise UserError(f"{path}: not a readable posterior file ({failed}); {_HINT}")
    missing = [g for g in ("posterior", "sample_stats") if g not in groups]
    if missing:
        raise UserError(f"{path}: no {' or '.join(missing)} group (it has: "
                        f"{', '.join(sorted(groups)) or 'none'}); not a whole posterior file, "
                        f"perhaps a partial copy; {_HINT}")
    from .posterior import FORMAT

    try:
        meta = json.loads(post.attrs["bayes_prune"])
        assert meta["format"] == FORMAT
    except (KeyError, AssertionError, json.JSONDecodeError, TypeError):
        raise UserError(f"{path}: a NetCDF file, but not a bayes_prune posterior "
                        f"(format {FORMAT!r} expected)") from None
    lost = [k for k in META if k not in meta]
    if lost:
        raise UserError(f"{path}: the posterior's metadata lacks {', '.join(lost)}; written by "
                        f"another version, or not by `bayes-prune fit`; {_HINT}")
    diag = meta.get("diagnostics")
    approximate = isinstance(meta.get("settings"), dict) and \
        meta["settings"].get("method", "nuts") != "nuts"
    lost = [k for k in (("pareto_k", "ok") if approximate else DIAGNOSTICS)
            if not isinstance(diag, dict) or k not in diag]
    if lost:
        raise UserError(f"{path}: the posterior's diagnostics lack {', '.join(lost)}; a "
                        "posterior is only used with its R-hat, ESS and divergences (an "
                        f"approximate one with its Pareto k); {_HINT}")
    if "diverging" not in stats:
        raise UserError(f"{path}: group sample_stats has no 'diverging' (it has: "
                        f"{', '.join(sorted(stats.data_vars)) or 'nothing'}); {_HINT}")
    if "theta" not in post:
        raise UserError(f"{path}: group posterior has no 'theta' draws; {_HINT}")
    return post, stats, meta
