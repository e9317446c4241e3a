"""Reading a results table's file and its cells, for :mod:`bayes_prune.tables`.

A table file (``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet``, or a Markdown pipe table) is read as
strings, every row keeping its file row (``_row``: the header is row 1) for messages; a cell is a
number when it reads as one (``0.91``, ``91.2 %``, ``9607294 (0.4096)``), a fraction column is
per cent when its header or a cell says so, or, under ``units="auto"``, when its largest value
exceeds 1. Every cell that cannot be read is a :class:`~bayes_prune.errors.UserError` naming the
file, its row and the column. pandas and numpy only.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError

FRACTIONS = ("accuracy", "test_error", "sparsity", "density", "random_error")
INTEGERS = ("depth", "width", "n_train", "round", "n_test", "params_total", "params_nonzero",
            "params_prunable", "test_mistakes", "prunable_kept", "n_classes")
ROW = "_row"  # the file row of every table row, for error messages


def read_table(path: str | Path) -> pd.DataFrame:
    """The table at ``path`` as strings, with a ``_row`` column (the file row of each row):
    ``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet``, or ``.md`` (its first pipe table)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such table file")
    name = path.name.lower()
    try:
        if name.endswith(".md"):
            df, rows = _markdown(path)
        elif name.endswith(".parquet"):
            df = pd.read_parquet(path).astype(str)
            rows = np.arange(len(df)) + 2
        elif name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")):
            sep = "\t" if ".tsv" in name else ","
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
            rows = np.arange(len(df)) + 2
        else:
            raise UserError(f"{path}: unknown table format; use .csv, .csv.gz, .tsv, .parquet "
                            "or .md")
    except UserError:
        raise
    except Exception as exc:  # pandas raises many types for unreadable files
        raise UserError(f"{path}: not a readable table ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if df.empty:
        raise UserError(f"{path}: the table has no rows")
    df.columns = [str(c).strip() for c in df.columns]
    df[ROW] = rows
    return df


def _markdown(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    lines = path.read_text().splitlines()
    for i in range(len(lines) - 1):
        if lines[i].lstrip().startswith("|") and re.fullmatch(
                r"\s*\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*", lines[i + 1]):
            def cells(line):
                return [c.strip() for c in line.strip().strip("|").split("|")]

            header, body, rows = cells(lines[i]), [], []
            for j in range(i + 2, len(lines)):
                if not lines[j].lstrip().startswith("|"):
                    break
                row = cells(lines[j])
                if len(row) != len(header):
                    raise UserError(f"{path}: row {j + 1}: {len(row)} cells under a header of "
                                    f"{len(header)}")
                body.append(row)
                rows.append(j + 1)
            return pd.DataFrame(body, columns=header), np.array(rows)
    raise UserError(f"{path}: no pipe table (a '| a | b |' header followed by '|---|---|')")


_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)\s*(?:\(.*\))?\s*$")


def parse_number(text: str) -> tuple[float, bool] | None:
    """(value, marked per cent) of a cell such as ``0.91``, ``91.2 %``, ``9607294 (0.4096)``."""
    m = _NUMBER.match(str(text))
    return (float(m.group(1)), m.group(2) == "%") if m else None


class Table:
    """One (stacked) table being mapped: the frame, its file, and where each target comes from."""

    def __init__(self, df: pd.DataFrame, path: Path):
        self.df, self.path = df, path
        self.source: dict[str, str] = {}  # target -> column of df
        self.label: dict[str, str] = {}  # target -> the column's name in messages

    def fail(self, i: int, target: str, message: str):
        col = self.label.get(target, self.source.get(target, target))
        raise UserError(f"{self.path}: row {self.df[ROW].iloc[i]}, column '{col}': {message}")

    def numbers(self, target: str, units: str) -> np.ndarray:
        col = self.source[target]
        parsed = [parse_number(v) for v in self.df[col]]
        for i, p in enumerate(parsed):
            if p is None or not math.isfinite(p[0]):
                shown = self.df[col].iloc[i]
                self.fail(i, target, f"{shown!r} is not a number"
                          if str(shown).strip() else "empty cell; a number is needed")
        values = np.array([p[0] for p in parsed], dtype=float)
        if target in FRACTIONS:
            values = self._fraction(target, values, [p[1] for p in parsed], units)
        if target in INTEGERS:
            frac = values != np.round(values)
            if frac.any():
                self.fail(int(np.argmax(frac)), target, f"{values[frac][0]:g} is not an integer")
        return values

    def _fraction(self, target, values, marked, units) -> np.ndarray:
        col = self.label.get(target, self.source[target])
        header = re.search(r"%|percent|pct", col, re.IGNORECASE) is not None
        percent = units == "percent" or (units == "auto" and (header or any(marked)))
        if units == "auto" and not percent and (values > 1).any():
            below = (values > 0) & (values < 1)
            if below.any():
                i = int(np.argmax(values > 1))
                self.fail(i, target, f"{values[i]:g} is above 1 while row "
                          f"{self.df[ROW].iloc[int(np.argmax(below))]} holds "
                          f"{values[below][0]:g}: fractions or percentages? give --units "
                          "fraction or --units percent")
            percent = True
        top = 100.0 if percent else 1.0
        bad = (values < 0) | (values > top)
        if bad.any():
            i = int(np.argmax(bad))
            unit = "a percentage in [0, 100]" if percent else "a fraction in [0, 1]"
            name = target.replace("_", " ")
            self.fail(i, target, f"{values[i]:g} is not {'an' if name[0] in 'ae' else 'a'} "
                      f"{name} ({unit})")
        return values / 100.0 if percent else values
