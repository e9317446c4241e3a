"""The error grid: the one table that joins the training side to the inference side.

One row per (IMP run, pruning round). Required columns:

==================  =======  =====================================================================
column              type     meaning
==================  =======  =====================================================================
task                str      data set (``mnist1d``, ``fashion-mnist``, ``digits``, ``cifar10``...)
arch                str      architecture family (``mlp``, ``cnn``, ``resnet``...)
depth               int > 0  depth knob of the family (hidden layers, conv layers, 6k+2...)
width               int > 0  width knob of the family (units, base channels...)
n_train             int > 0  training-set size
seed                int      the run's seed (initialisation, data order, subsample)
round               int >= 0 pruning round; 0 is the dense network
density             (0, 1]   fraction of prunable weights left (0.8^round for 20 % per round)
test_error          [0, 1]   test error after retraining at this density
n_test              int > 0  test-set size (sets the binomial noise of ``test_error``)
params_total        int > 0  weights of the dense network (all parameters)
params_nonzero      int >= 0 non-zero weights at this round
==================  =======  =====================================================================

Optional provenance columns, kept when present: ``run_id`` (hash of the run's full config; when
present it is part of the run key), ``test_mistakes``, ``train_loss``, ``params_prunable``,
``random_error`` (random-guess error of the task; otherwise taken from the task registry),
``device``, ``code_version``, ``source``.

A *run* is one IMP trajectory, keyed by :data:`RUN_KEY` (plus ``run_id`` when present); a
*configuration* is a run without its seed (:data:`CONFIG_KEY`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .tasks import random_error as _registry_random_error
from .workers import sweep, temp_beside

__all__ = [
    "COLUMNS",
    "PROVENANCE",
    "GROUP_KEY",
    "CONFIG_KEY",
    "RUN_KEY",
    "validate",
    "read_grid",
    "read_grids",
    "write_grid",
    "grid_hash",
    "run_key",
    "random_errors",
]

INT_COLUMNS = ("depth", "width", "n_train", "seed", "round", "n_test", "params_total",
               "params_nonzero")
FLOAT_COLUMNS = ("density", "test_error")
STR_COLUMNS = ("task", "arch")
COLUMNS = ("task", "arch", "depth", "width", "n_train", "seed", "round", "density",
           "test_error", "n_test", "params_total", "params_nonzero")
PROVENANCE = ("run_id", "test_mistakes", "train_loss", "params_prunable", "random_error",
              "device", "code_version", "source")

GROUP_KEY = ["arch", "task"]
CONFIG_KEY = ["task", "arch", "depth", "width", "n_train"]
RUN_KEY = CONFIG_KEY + ["seed"]
# the axes along which a configuration grows: extrapolations are measured and flagged on these
SIZE_AXES = ("depth", "width", "n_train")
# the extrapolation discrepancy measures a rate per size axis in these two directions, and how
# much wider the invariant's offsets are on the side where larger networks prune better
LEAN = "skew_invariant"
RATES = ("sd_dense", "sd_invariant", LEAN)


def arch_of(group: str) -> str:
    """The architecture of an ``arch/task`` group name (as a discrepancy keys its groups)."""
    return group.split("/")[0]


def log_excess(sizes: np.ndarray, trained: np.ndarray,
               weights: np.ndarray | None = None) -> np.ndarray:
    """How far each configuration lies beyond a grid: per row of ``sizes`` (``(n, axes)``, on
    :data:`SIZE_AXES`), its log excess on each axis over the trained configuration (a row of
    ``trained``) nearest to it, the one that leaves the least sum over axes of ``weights`` x
    squared excess (``weights``: the squared drift rates; equal when ``None``). Zero on every
    axis for a configuration some trained one dominates on every axis. On a grid that is a
    full cross product this is the excess over each axis' largest value; on any other, a
    configuration wider than the deep networks and deeper than the wide ones lies beyond the
    grid although no axis' largest value is exceeded."""
    sizes, trained = np.asarray(sizes, float), np.asarray(trained, float)
    w = np.ones(sizes.shape[1]) if weights is None else np.asarray(weights, float)
    out = np.empty_like(sizes)
    big = np.log(trained)[None]
    for start in range(0, len(sizes), 2048):  # (rows, trained, axes) at a time: bounded memory
        ex = np.maximum(np.log(sizes[start:start + 2048])[:, None] - big, 0.0)
        # equal weights break ties between configurations a zero rate cannot tell apart
        cost = (ex ** 2 * w).sum(axis=2) + 1e-9 * (ex ** 2).sum(axis=2)
        out[start:start + 2048] = ex[np.arange(len(ex)), cost.argmin(axis=1)]
    return out


# (column, test that flags a bad value, what was expected)
_RANGES = (
    ("depth", lambda s: s <= 0, "a positive integer"),
    ("width", lambda s: s <= 0, "a positive integer"),
    ("n_train", lambda s: s <= 0, "a positive integer"),
    ("round", lambda s: s < 0, "an integer >= 0"),
    ("n_test", lambda s: s <= 0, "a positive integer"),
    ("params_total", lambda s: s <= 0, "a positive integer"),
    ("params_nonzero", lambda s: s < 0, "an integer >= 0"),
    ("density", lambda s: (s <= 0) | (s > 1), "a density in (0, 1]"),
    ("test_error", lambda s: (s < 0) | (s > 1), "an error in [0, 1]"),
)


# optional numeric columns, checked when present: (column, integer?, may a row leave it empty?)
# params_prunable may not: the model takes it, where present, as every row's prunable count.
_OPTIONAL_NUMBERS = (("random_error", False, True), ("test_mistakes", True, True),
                     ("params_prunable", True, False), ("train_loss", False, True))
_OPTIONAL_RANGES = (
    ("random_error", lambda s: (s <= 0) | (s > 1), "a random-guess error in (0, 1]"),
    ("test_mistakes", lambda s: s < 0, "an integer >= 0"),
    ("params_prunable", lambda s: s < 0, "an integer >= 0"),
)
_MAX_INT = 2**53  # integers beyond this are not exact as the float a CSV reader may give


def _numbers(column: pd.Series, col: str, source: str, integer: bool,
             missing_ok: bool = False) -> pd.Series:
    """``column`` as finite numbers (int64 if ``integer``): every value is checked (a number,
    finite, integral and within +-2^53 for an integer column) before any cast."""
    num = pd.to_numeric(column, errors="coerce")
    nan = column.isna().to_numpy()
    if nan.any() and not missing_ok:
        raise UserError(f"{_where(source, int(np.argmax(nan)), col)}: missing value (NaN); "
                        f"{col}, when the column is present, is needed on every row")
    bad = (num.isna().to_numpy() & ~nan)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{_where(source, i, col)}: {_show(column.iloc[i])} is not a number")
    values = num.to_numpy(float)
    inf = np.isinf(values)
    if inf.any():
        i = int(np.argmax(inf))
        raise UserError(f"{_where(source, i, col)}: {_show(column.iloc[i])} is not a finite "
                        "number")
    if not integer or nan.any():
        return num.astype(float)
    frac = (values != np.round(values)) & ~nan
    if frac.any():
        i = int(np.argmax(frac))
        raise UserError(f"{_where(source, i, col)}: {_show(column.iloc[i])} is not an integer")
    big = np.abs(values) > _MAX_INT
    if big.any():
        i = int(np.argmax(big))
        raise UserError(f"{_where(source, i, col)}: {_show(column.iloc[i])} is not an integer "
                        f"of at most 2^53 in size")
    return num.astype(np.int64)


def _check_random_error(out: pd.DataFrame, source: str) -> None:
    """A row without a ``random_error`` needs a task the registry knows."""
    from .tasks import TASKS

    given = out["random_error"].notna() if "random_error" in out.columns else False
    unknown = (~out["task"].isin(list(TASKS)) & ~given).to_numpy()
    if unknown.any():
        i = int(np.argmax(unknown))
        raise UserError(f"{_where(source, i, 'random_error')}: task {out['task'].iloc[i]!r} is "
                        f"not one the toolkit knows ({', '.join(TASKS)}), so the row needs its "
                        "random-guess error in a random_error column, in (0, 1)")


def run_key(df: pd.DataFrame) -> list[str]:
    """Columns that identify one IMP run in ``df``: :data:`RUN_KEY`, plus ``run_id`` if any."""
    return RUN_KEY + (["run_id"] if "run_id" in df.columns else [])


def _show(value) -> str:
    value = value.item() if hasattr(value, "item") else value
    return repr(value)


def _where(source: str, row: int, column: str) -> str:
    # Rows are counted as in the file: the header is line 1, the first data row is row 2.
    return f"{source}: row {row + 2}, column '{column}'"


def other_separator(columns, missing) -> str | None:
    """The separator (``;``, tab or ``|``) of a table that pandas read as one column holding
    every name, those ``missing`` among them; ``None`` otherwise."""
    return next((c for c in (";", "\t", "|") if len(columns) == 1
                 and all(n in str(columns[0]).split(c) for n in missing)), None)


def validate(df: pd.DataFrame, source: str = "<grid>") -> pd.DataFrame:
    """Check ``df`` against the schema and return a copy with canonical dtypes and row order.

    Raises :class:`UserError` naming ``source``, the row, the column and what was expected for
    the first problem found: a missing column, a NaN, a non-numeric, infinite or (in an integer
    column) fractional or huge value, a value out of range (the optional ``random_error`` in
    (0, 1), ``test_mistakes`` and ``params_prunable`` >= 0, checked when present),
    ``params_nonzero`` or ``params_prunable > params_total``, ``test_mistakes > n_test``, or a
    duplicate (run, round) key. Every value is checked before it is cast.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        sep = other_separator(df.columns, missing)
        if sep:
            raise UserError(f"{source}: its columns are separated by {sep!r}; a grid CSV is "
                            "separated by commas (pandas: df.to_csv(path, index=False))")
        raise UserError(f"{source}: missing column(s) {', '.join(missing)}; "
                        f"a grid needs {', '.join(COLUMNS)}")
    if len(df) == 0:
        raise UserError(f"{source}: the grid has no rows")
    out = df.reset_index(drop=True).copy()
    for col in COLUMNS:
        nan = out[col].isna().to_numpy()
        if nan.any():
            raise UserError(f"{_where(source, int(np.argmax(nan)), col)}: missing value (NaN)")
    for col in STR_COLUMNS:
        out[col] = out[col].astype(str)
    for col in INT_COLUMNS + FLOAT_COLUMNS:
        out[col] = _numbers(out[col], col, source, integer=col in INT_COLUMNS)
    for col, integer, missing_ok in _OPTIONAL_NUMBERS:
        if col in out.columns:
            out[col] = _numbers(out[col], col, source, integer, missing_ok)
    _check_random_error(out, source)
    for col, is_bad, expected in _RANGES:
        bad = is_bad(out[col]).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            value = _show(out[col].iloc[i])
            raise UserError(f"{_where(source, i, col)}: {value} is not {expected}")
    for col, is_bad, expected in _OPTIONAL_RANGES:
        if col in out.columns:
            bad = is_bad(out[col]).to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                raise UserError(f"{_where(source, i, col)}: {_show(out[col].iloc[i])} is not "
                                f"{expected}")
    for col, limit in (("params_nonzero", "params_total"), ("params_prunable", "params_total"),
                       ("test_mistakes", "n_test")):
        if col not in out.columns:
            continue
        over = (out[col] > out[limit]).to_numpy()
        if over.any():
            i = int(np.argmax(over))
            raise UserError(f"{_where(source, i, col)}: {_show(out[col].iloc[i])} exceeds "
                            f"{limit} {_show(out[limit].iloc[i])}")
    key = run_key(out) + ["round"]
    dup = out.duplicated(subset=key).to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        shown = ", ".join(f"{k}={_show(out.loc[i, k])}" for k in key)
        raise UserError(f"{_where(source, i, 'round')}: duplicate (run, round) key ({shown}); "
                        "each run may list each round once")
    return out.sort_values(key, kind="stable").reset_index(drop=True)


def read_grid(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate an error grid from ``.csv`` or ``.parquet``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a grid file (.csv or .parquet)")
    if not path.is_file():
        raise UserError(f"{path}: no such grid file")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        elif path.suffix == ".csv":
            df = pd.read_csv(path)
        else:
            raise UserError(f"{path}: unknown grid format {path.suffix!r}; use .csv or .parquet")
    except UserError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise UserError(f"{path}: not a readable grid file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return validate(df, source=str(path))


def read_grids(paths) -> pd.DataFrame:
    """Read several grid files as one validated grid (one file: as :func:`read_grid`); the
    checks that span files (a duplicated key across two of them) run on the whole."""
    grids = [read_grid(p) for p in paths]
    if len(grids) == 1:
        return grids[0]
    return validate(pd.concat(grids, ignore_index=True), source=" + ".join(map(str, paths)))


def grid_hash(df: pd.DataFrame) -> str:
    """SHA-256 of a grid's rows: what ``fit`` stores as ``provenance.grid_sha256``, and what
    tells a posterior's grid from another (the shipped reference's test compares them)."""
    import hashlib

    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values).hexdigest()


def write_grid(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate ``df`` and write it to ``.csv`` or ``.parquet`` atomically (this writer's temp
    file, then rename): a failed write leaves an existing file as it was, and temp files that
    killed writers left beside ``path`` are removed (:func:`bayes_prune.workers.sweep`)."""
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise UserError(f"{path}: unknown grid format {path.suffix!r}; use .csv or .parquet")
    out = validate(df, source=str(path))
    cols = list(COLUMNS) + [c for c in out.columns if c not in COLUMNS]
    sweep(path)
    tmp = temp_beside(path)
    try:
        if path.suffix == ".csv":
            out[cols].to_csv(tmp, index=False)
        else:
            out[cols].to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def random_errors(df: pd.DataFrame) -> pd.Series:
    """Random-guess error per row: the ``random_error`` column where given, else the task
    registry's."""
    given = df["random_error"].astype(float) if "random_error" in df.columns else \
        pd.Series(np.nan, index=df.index)
    missing = given.isna()
    if missing.any():
        given = given.copy()
        given[missing] = df.loc[missing, "task"].map(_registry_random_error).astype(float)
    return given
