"""Import a results table (a W&B or MLflow export, a spreadsheet, a paper's table) as an error grid.

A table has one row per measured network and density, in whatever columns its author chose.
``--map COLUMN=SOURCE`` says which source column feeds which grid column, ``--set
COLUMN=VALUE`` gives a column one value for every row, ``--join FILE`` adds columns looked up
by a key column (``network`` -> depth, width, params_total...), ``--where SOURCE=V1,V2`` keeps
the rows whose SOURCE is one of the values. Besides the grid's own columns (see
:mod:`bayes_prune.grid`), a map or set may name what tables hold instead:

=================  ===========================================================================
``accuracy``       test_error = 1 - accuracy
``sparsity``       density = 1 - sparsity (fraction of prunable weights removed, "% pruned")
``prunable_kept``  prunable weights left: density = prunable_kept / params_prunable
``n_classes``      random_error = 1 - 1 / n_classes (needed for tasks bayes_prune does not know)
=================  ===========================================================================

Fractions (accuracy, test_error, sparsity, density, random_error) may be percentages: a column
is read as per cent when its header or a cell says ``%`` (or "percent", "pct") or, under
``units="auto"``, when its largest value exceeds 1; a column that mixes values below and above 1
is refused (give ``units``). ``round`` comes from the density when missing,
round(log d / log(1 - prune_fraction)), and the density must then lie within a quarter round of
(1 - prune_fraction)^round; ``params_nonzero`` from params_total - params_prunable +
round(density x params_prunable), params_prunable defaulting to params_total; a ``seed`` may be
a label ending in its number (``trial_3``). Mapping several source columns to one grid column
(``--map accuracy=IN,IN-V2``) stacks the table once per source column, and a ``--set`` with as
many comma-separated values gives each copy its own (a table with one accuracy column per
test set). ``dense`` names a table of dense networks: every run without a round 0 gets one, the
median error of that table's rows of its configuration (same maps, sets and joins).

Every cell that cannot be mapped is a :class:`~bayes_prune.errors.UserError` naming the file,
its row (the file's line; the header is row 1) and the column. pandas and numpy only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .grid import COLUMNS, PROVENANCE, RUN_KEY, validate
from .table_cells import INTEGERS, ROW, Table, parse_number, read_table
from .tasks import TASKS

__all__ = ["TableMap", "import_table", "read_table", "TARGETS"]

DERIVED = ("accuracy", "sparsity", "prunable_kept", "n_classes")
TARGETS = tuple(COLUMNS) + tuple(PROVENANCE) + DERIVED
STRINGS = ("task", "arch", "run_id", "source", "device", "code_version")
ALTERNATIVES = (("test_error", "accuracy"), ("density", "sparsity", "prunable_kept"),
                ("random_error", "n_classes"))
UNITS = ("auto", "fraction", "percent")


@dataclass(frozen=True)
class TableMap:
    """How a table's columns become a grid's: each target names source columns (``maps``) or
    constants (``sets``), one entry per stacked copy of the table."""

    maps: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, list[str]] = field(default_factory=dict)
    where: dict[str, list[str]] = field(default_factory=dict)
    joins: tuple[str, ...] = ()
    units: str = "auto"
    prune_fraction: float = 0.2

    @classmethod
    def from_options(cls, maps=(), sets=(), where=(), joins=(), units="auto",
                     prune_fraction=0.2) -> TableMap:
        """From ``COLUMN=SOURCE[,SOURCE...]`` strings as the command line gives them."""
        def pairs(items, option, targets):
            out: dict[str, list[str]] = {}
            for item in items:
                key, sep, value = item.partition("=")
                key = key.strip()
                if not sep or not key or not value.strip():
                    raise UserError(f"{option} {item!r}: expected NAME=VALUE")
                if targets and key not in TARGETS:
                    raise UserError(f"{option} {item!r}: {key!r} is not a column of the grid; "
                                    f"allowed: {', '.join(TARGETS)}")
                out[key] = [v.strip() for v in value.split(",")]
            return out

        if units not in UNITS:
            raise UserError(f"--units {units!r}; allowed: {', '.join(UNITS)}")
        if not 0 < prune_fraction < 1:
            raise UserError(f"--prune-fraction {prune_fraction!r} must be in (0, 1)")
        m, s = pairs(maps, "--map", True), pairs(sets, "--set", True)
        both = sorted(set(m) & set(s))
        if both:
            raise UserError(f"column {both[0]!r} is given by --map and by --set; give one")
        return cls(m, s, pairs(where, "--where", False), tuple(joins), units, prune_fraction)


def _stack(df: pd.DataFrame, m: TableMap, path: Path) -> Table:
    """The table once per source column of a multi-column map, targets pointing at columns."""
    widths = {len(v) for v in list(m.maps.values()) + list(m.sets.values()) if len(v) > 1}
    if len(widths) > 1:
        raise UserError(f"--map/--set lists have different lengths {sorted(widths)}; each "
                        "list gives one value per stacked copy of the table")
    k = widths.pop() if widths else 1
    copies = []
    for c in range(k):
        part = df.copy()
        for target, values in m.sets.items():
            part[f"--set {target}"] = values[c if len(values) > 1 else 0]
        for target, sources in m.maps.items():
            part[f"=> {target}"] = part[sources[c if len(sources) > 1 else 0]]
        copies.append(part)
    table = Table(pd.concat(copies, ignore_index=True), path)
    for target, sources in m.maps.items():
        table.source[target] = f"=> {target}"
        table.label[target] = "/".join(sources)
    for target in m.sets:
        table.source[target] = f"--set {target}"
    return table


def _check_sources(df: pd.DataFrame, m: TableMap, path: Path) -> None:
    for option, items in (("--map", m.maps), ("--where", m.where)):
        for key, sources in items.items():
            for s in (sources if option == "--map" else [key]):
                if s not in df.columns:
                    cols = ", ".join(repr(c) for c in df.columns if c != ROW)
                    raise UserError(f"{path}: {option} {key}={','.join(sources)}: no column "
                                    f"{s!r}; the table has {cols}")


def _filter(df: pd.DataFrame, where: dict[str, list[str]]) -> pd.DataFrame:
    for col, values in where.items():
        if col not in df.columns:
            continue

        def match(cell, values=values):
            if str(cell).strip() in values:
                return True
            a = parse_number(cell)
            return a is not None and any((b := parse_number(v)) is not None and a[0] == b[0]
                                         for v in values)

        df = df[df[col].map(match)]
    return df


def _join(df: pd.DataFrame, m: TableMap, path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Add each join file's columns to ``df`` by its key columns; targets -> joined columns."""
    joined: dict[str, str] = {}
    for jpath in map(Path, m.joins):
        j = read_table(jpath).drop(columns=ROW)
        keys = [c for c in j.columns if c in df.columns]
        if not keys:
            raise UserError(f"--join {jpath}: no column in common with {path}; its key column "
                            f"must be named as in the table ({', '.join(j.columns)})")
        bad = [c for c in j.columns if c not in keys and c not in TARGETS]
        if bad:
            raise UserError(f"--join {jpath}: column {bad[0]!r} is neither a key column of "
                            f"the table nor a grid column ({', '.join(TARGETS)})")
        dup = j.duplicated(subset=keys)
        if dup.any():
            raise UserError(f"--join {jpath}: row {int(np.argmax(dup.to_numpy())) + 2}: key "
                            f"{tuple(j.loc[dup, keys].iloc[0])} appears twice")
        rename = {c: f"{jpath.name}:{c}" for c in j.columns if c not in keys}
        out = df.merge(j.rename(columns=rename), on=keys, how="left", indicator=True)
        missing = (out["_merge"] != "both").to_numpy()
        if missing.any():
            i = int(np.argmax(missing))
            raise UserError(f"{path}: row {out[ROW].iloc[i]}, column '{keys[0]}': "
                            f"{out[keys[0]].iloc[i]!r} is not in --join {jpath} (it has "
                            f"{', '.join(sorted(j[keys[0]].astype(str)))}); drop such rows "
                            f"with --where {keys[0]}=...")
        df = out.drop(columns="_merge")
        for c, new in rename.items():
            if c in m.maps or c in m.sets or c in joined:
                raise UserError(f"--join {jpath}: column {c!r} is also given by --map/--set "
                                "or another join; give it once")
            joined[c] = new
    return df, joined


def _targets(df: pd.DataFrame, m: TableMap, path: Path, joined: dict[str, str]) -> Table:
    table = _stack(df, m, path)
    table.source.update(joined)
    for group in ALTERNATIVES:
        given = [t for t in group if t in table.source]
        if len(given) > 1:
            raise UserError(f"{' and '.join(given)} are both given; give one of "
                            f"{', '.join(group)}")
    return table


def _convert(table: Table, m: TableMap, need_seed: bool = True) -> pd.DataFrame:
    """The grid columns of a mapped table (``_row`` kept for messages)."""
    src, df = table.source, table.df
    out = pd.DataFrame({ROW: df[ROW].to_numpy()})
    for target in src:
        if target in STRINGS:
            values = df[src[target]].astype(str).str.strip()
            empty = (values == "").to_numpy()
            if empty.any():
                table.fail(int(np.argmax(empty)), target, "empty cell; a name is needed")
            out[target] = values.to_numpy()
        elif target == "seed":
            out["seed"] = [_seed(table, i, v) for i, v in enumerate(df[src["seed"]])]
        else:
            out[target] = table.numbers(target, m.units)
    if "accuracy" in out:
        out["test_error"] = 1.0 - out.pop("accuracy")
    if "sparsity" in out:
        out["density"] = 1.0 - out.pop("sparsity")
        zero = (out["density"] <= 0).to_numpy()
        if zero.any():
            table.fail(int(np.argmax(zero)), "sparsity", "sparsity 1 leaves density 0; if this "
                       "column holds densities (1 = dense), map it as density=COLUMN")
    if "n_classes" in out:
        bad = (out["n_classes"] < 2).to_numpy()
        if bad.any():
            table.fail(int(np.argmax(bad)), "n_classes", f"{out['n_classes'][bad].iloc[0]:g} "
                       "is not a number of classes (>= 2)")
        out["random_error"] = 1.0 - 1.0 / out.pop("n_classes")
    need = [c for c in ("task", "arch", "depth", "width", "n_train") + (
        ("seed",) if need_seed else ()) + ("test_error", "n_test", "params_total")
        if c not in out]
    if "density" not in out and "prunable_kept" not in out:
        need.append("density")
    if need:
        raise UserError(f"{table.path}: no source for {', '.join(need)}; give --map "
                        "COLUMN=SOURCE, --set COLUMN=VALUE or a --join file for each")
    if "params_prunable" not in out:
        out["params_prunable"] = out["params_total"]
    if "prunable_kept" in out:
        over = (out["prunable_kept"] > out["params_prunable"]).to_numpy()
        if over.any():
            table.fail(int(np.argmax(over)), "prunable_kept", "more prunable weights left "
                       f"({out['prunable_kept'][over].iloc[0]:g}) than params_prunable")
        out["density"] = out["prunable_kept"] / out["params_prunable"]
    zero = (out["density"] <= 0).to_numpy()
    if zero.any():
        table.fail(int(np.argmax(zero)), "density", "density 0: a grid's densities lie in "
                   "(0, 1]")
    return out


def _seed(table: Table, i: int, value) -> int:
    m = re.fullmatch(r"\s*(?:.*?\D)?(\d+)\s*", str(value))
    n = parse_number(value)
    if n is not None and n[0] == round(n[0]):
        return int(n[0])
    if m:
        return int(m.group(1))
    table.fail(i, "seed", f"{value!r} is neither an integer nor a label ending in one "
               "('trial_3')")
    raise AssertionError  # fail raises


def _rounds(out: pd.DataFrame, table: Table, m: TableMap) -> pd.DataFrame:
    """Round from density where the table has none; densities must fall as rounds rise."""
    keep = 1.0 - m.prune_fraction
    if "round" not in out:
        exact = np.log(out["density"].to_numpy()) / np.log(keep)
        out["round"] = np.round(exact).astype(np.int64)
        off = np.abs(exact - out["round"]) > 0.25
        if off.any():
            i = int(np.argmax(off))
            key = next(t for t in ("density", "sparsity", "prunable_kept") if t in table.source)
            table.fail(i, key, f"density {out['density'].iloc[i]:.4g} is {exact[i]:.2f} "
                       f"rounds of pruning {m.prune_fraction:g} a round, not a whole "
                       "number; map a round column, or set --prune-fraction")
    return out


def _falling(out: pd.DataFrame, table: Table) -> None:
    key = [c for c in RUN_KEY + ["run_id"] if c in out]
    for _, run in out.sort_values("round", kind="stable").groupby(key, sort=False):
        d = run["density"].to_numpy()
        rise = np.flatnonzero(np.diff(d) > 1e-9)
        if rise.size:
            a, b = run.iloc[rise[0]], run.iloc[rise[0] + 1]
            hint = ("; a sparsity rises with round: does this column hold densities? map it "
                    "as density=COLUMN") if "sparsity" in table.source else ""
            col = next(t for t in ("sparsity", "density", "prunable_kept") if t in table.source)
            name = table.label.get(col, table.source[col])
            raise UserError(f"{table.path}: row {int(b[ROW])}, column '{name}': density "
                            f"{b['density']:.4g} at round "
                            f"{int(b['round'])} exceeds {a['density']:.4g} at round "
                            f"{int(a['round'])} of the same run (row {int(a[ROW])}){hint}")


def _nonzero(out: pd.DataFrame) -> pd.DataFrame:
    """params_nonzero where the table gives none: the never-pruned weights plus the prunable
    ones left."""
    prunable = out["params_prunable"].to_numpy(float)
    kept = (out["prunable_kept"].to_numpy(float) if "prunable_kept" in out
            else np.round(out["density"].to_numpy() * prunable))
    derived = out["params_total"].to_numpy(float) - prunable + kept
    given = out["params_nonzero"] if "params_nonzero" in out else pd.Series(np.nan, out.index)
    out["params_nonzero"] = given.fillna(pd.Series(derived, out.index))
    return out.drop(columns=[c for c in ("prunable_kept",) if c in out])


def _random_error(out: pd.DataFrame, table: Table) -> None:
    if "random_error" in out:
        return
    unknown = ~out["task"].isin(list(TASKS)).to_numpy()
    if unknown.any():
        table.fail(int(np.argmax(unknown)), "task", f"{out['task'].iloc[int(np.argmax(unknown))]!r}"
                   f" is not a task bayes_prune knows ({', '.join(TASKS)}); give its "
                   "random-guess error: --set n_classes=N or --set random_error=E (or map a "
                   "column)")


def _dense_rows(out: pd.DataFrame, dense_path: Path, m: TableMap) -> pd.DataFrame:
    """A round-0 row for every run without one: the median error of the dense table's
    networks of the run's configuration."""
    config = ["task", "arch", "depth", "width", "n_train"]
    raw = _filter(read_table(dense_path), m.where)
    if raw.empty:
        raise UserError(f"--dense {dense_path}: no row left after --where")
    keep = TableMap({t: s for t, s in m.maps.items() if all(c in raw.columns for c in s)
                     and t not in ("seed", "round", "density", "sparsity", "prunable_kept",
                                   "run_id")},
                    {t: v for t, v in m.sets.items() if t not in ("seed", "round", "run_id")},
                    m.where, m.joins, m.units, m.prune_fraction)
    raw, joined = _join(raw, keep, dense_path)
    table = _targets(raw, keep, dense_path, joined)
    table.source.setdefault("density", "--dense")
    table.df["--dense"] = "1"
    dense = _convert(table, keep, need_seed=False)
    medians = dense.groupby(config)["test_error"].agg(["median", "size"])
    runs_key = [c for c in RUN_KEY + ["run_id"] if c in out]
    have = set(map(tuple, out.loc[out["round"] == 0, runs_key].to_numpy().tolist()))
    rows = []
    for key, run in out.groupby(runs_key, sort=False):
        if tuple(key) in have:
            continue
        first = run.iloc[0]
        cfg = tuple(first[c] for c in config)
        if cfg not in medians.index:
            raise UserError(f"--dense {dense_path}: no dense network of configuration "
                            f"{dict(zip(config, cfg, strict=True))} (the run of row "
                            f"{int(first[ROW])})")
        med, size = medians.loc[cfg]
        rows.append({**first.to_dict(), "round": 0, "density": 1.0, "test_error": float(med),
                     "params_nonzero": first["params_total"],
                     "source": f"{dense_path.name}: median of {int(size)} dense networks"})
    return pd.concat([out, pd.DataFrame(rows)], ignore_index=True) if rows else out


def import_table(path: str | Path, mapping: TableMap, dense: str | Path | None = None) \
        -> pd.DataFrame:
    """The table at ``path`` as a validated error grid, mapped by ``mapping`` (see the module
    docstring); ``dense`` optionally names a table of dense networks for runs without round 0.
    """
    path = Path(path)
    raw = read_table(path)
    _check_sources(raw, mapping, path)
    df = _filter(raw, mapping.where)
    if df.empty:
        raise UserError(f"{path}: no row left after --where "
                        + " ".join(f"{k}={','.join(v)}" for k, v in mapping.where.items()))
    df, joined = _join(df, mapping, path)
    table = _targets(df, mapping, path, joined)
    out = _convert(table, mapping)
    _random_error(out, table)
    out = _rounds(out, table, mapping)
    _falling(out, table)
    if "source" not in out:
        out["source"] = path.name
    if dense is not None:
        out = _dense_rows(out, Path(dense), mapping)
    out = _nonzero(out)
    key = [c for c in RUN_KEY + ["run_id"] if c in out] + ["round"]
    dup = out.duplicated(subset=key, keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        first = out[(out[key] == out.loc[i, key]).all(axis=1)].iloc[0]
        raise UserError(f"{path}: row {int(out[ROW].iloc[i])}: the same run and round as row "
                        f"{int(first[ROW])} ({', '.join(f'{k}={out.loc[i, k]}' for k in key)}); "
                        "map the column that tells them apart (seed=..., run_id=...) or "
                        "filter with --where")
    out = out.drop(columns=ROW)
    ints = [c for c in INTEGERS if c in out]
    out[ints] = out[ints].astype(np.int64)
    cols = list(COLUMNS) + [c for c in PROVENANCE if c in out]
    return validate(out[cols], source=f"{path} (as imported)")
