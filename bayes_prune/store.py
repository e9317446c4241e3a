"""The results store: SQLite (stdlib), one row per (run, round), committed as each round ends.

Tables: ``runs`` (one row per IMP run: its config as JSON, status ``running`` / ``done`` /
``failed``, attempts) and ``rounds`` (the measurements of every finished round, primary key
``(run_id, round)`` so a round is stored exactly once). Checkpoints that let an interrupted
run resume from its last finished round live beside the database in ``<store>.ckpt/``,
written to a temporary file and renamed into place, and read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pandas as pd

from .errors import UserError
from .grid import validate
from .spec import RunConfig

__all__ = ["Store", "ROUND_FIELDS"]

ROUND_FIELDS = ("density", "test_error", "test_mistakes", "n_test", "train_loss", "params_total",
                "params_prunable", "params_nonzero", "seconds")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, config TEXT NOT NULL,
    task TEXT, arch TEXT, depth INTEGER, width INTEGER, n_train INTEGER, seed INTEGER,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
    device TEXT, code_version TEXT, updated REAL);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL REFERENCES runs(run_id), round INTEGER NOT NULL,
    {", ".join(f"{f} REAL" for f in ROUND_FIELDS)}, created REAL,
    PRIMARY KEY (run_id, round));
"""


class Store:
    """An SQLite results store at ``path`` (created on first write)."""

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UserError(f"{self.path}: no such store")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a bayes_prune store ({exc})") from None
        self.ckpt_dir = self.path.with_name(self.path.name + ".ckpt")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ runs
    def run_status(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else None

    def statuses(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT run_id, status FROM runs"))

    def status_counts(self) -> list[tuple[str, str, str, int]]:
        """``(arch, task, status, runs)`` over every run in the store, whatever wrote it."""
        return list(self.db.execute("SELECT arch, task, status, COUNT(*) FROM runs "
                                    "GROUP BY arch, task, status ORDER BY arch, task, status"))

    def start(self, cfg: RunConfig, device: str, code_version: str) -> None:
        """Mark ``cfg`` as running (one more attempt), creating its row if new."""
        self.open_run(cfg.run_id, cfg.to_json(), cfg.task, cfg.arch, cfg.depth, cfg.width,
                      cfg.n_train, cfg.seed, device, code_version)

    def open_run(self, run_id: str, config: str, task: str, arch: str, depth: int, width: int,
                 n_train: int, seed: int, device: str, code_version: str) -> None:
        """Create run ``run_id`` (``config``: its JSON) or count one more attempt; a run not
        done is marked running, a done one stays done."""
        with self.db:
            self.db.execute(
                "INSERT INTO runs (run_id, config, task, arch, depth, width, n_train, seed, "
                "status, attempts, device, code_version, updated) "
                "VALUES (?,?,?,?,?,?,?,?,'running',1,?,?,?) ON CONFLICT(run_id) DO UPDATE SET "
                "status=CASE WHEN status='done' THEN 'done' ELSE 'running' END, "
                "attempts=attempts+1, error=NULL, device=excluded.device, "
                "updated=excluded.updated",
                (run_id, config, task, arch, depth, width, n_train, seed, device, code_version,
                 time.time()))

    def finish(self, run_id: str) -> None:
        """Mark run ``run_id`` done."""
        with self.db:
            self.db.execute("UPDATE runs SET status='done', updated=? WHERE run_id=?",
                            (time.time(), run_id))

    def fail(self, run_id: str, message: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status='failed', error=?, updated=? WHERE run_id=?",
                            (message[:2000], time.time(), run_id))

    # ---------------------------------------------------------------- rounds
    def rounds(self, run_id: str) -> list[int]:
        return [r for (r,) in self.db.execute(
            "SELECT round FROM rounds WHERE run_id=? ORDER BY round", (run_id,))]

    def round_values(self, run_id: str) -> dict[int, dict]:
        """``{round: {field: value}}`` of every stored round of ``run_id``."""
        cur = self.db.execute(f"SELECT round, {', '.join(ROUND_FIELDS)} FROM rounds "
                              "WHERE run_id=? ORDER BY round", (run_id,))
        return {r: dict(zip(ROUND_FIELDS, rest, strict=True)) for r, *rest in cur}

    def add_round(self, run_id: str, round_: int, values: dict, done: bool) -> None:
        """Store one finished round (and, if it is the last, mark the run done) atomically.
        A round already stored is kept as it is (the key makes every round appear once)."""
        cols = ", ".join(ROUND_FIELDS)
        with self.db:
            self.db.execute(
                f"INSERT OR IGNORE INTO rounds (run_id, round, {cols}, created) "
                f"VALUES (?, ?, {', '.join('?' * len(ROUND_FIELDS))}, ?)",
                (run_id, round_, *(values[f] for f in ROUND_FIELDS), time.time()))
            if done:
                self.db.execute("UPDATE runs SET status='done', updated=? WHERE run_id=?",
                                (time.time(), run_id))

    # ----------------------------------------------------------- checkpoints
    def checkpoint_path(self, run_id: str) -> Path:
        return self.ckpt_dir / f"{run_id}.pt"

    def save_checkpoint(self, run_id: str, state: dict) -> None:
        import torch

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_path(run_id)
        tmp = final.with_name(final.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, final)

    def load_checkpoint(self, run_id: str) -> dict | None:
        import torch

        path = self.checkpoint_path(run_id)
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() \
            else None

    def drop_checkpoint(self, run_id: str) -> None:
        self.checkpoint_path(run_id).unlink(missing_ok=True)

    # ---------------------------------------------------------------- export
    def export(self) -> pd.DataFrame:
        """Every stored round in the error-grid schema (see :mod:`bayes_prune.grid`)."""
        from .tasks import random_error

        df = pd.read_sql_query(
            "SELECT r.task, r.arch, r.depth, r.width, r.n_train, r.seed, d.round, d.density, "
            "d.test_error, d.n_test, d.params_total, d.params_nonzero, r.run_id, "
            "d.test_mistakes, d.train_loss, d.params_prunable, r.device, r.code_version, "
            "r.config "
            "FROM rounds d JOIN runs r USING (run_id) ORDER BY r.task, r.arch, r.depth, "
            "r.width, r.n_train, r.seed, d.round", self.db)
        if df.empty:
            raise UserError(f"{self.path}: the store holds no finished rounds yet")
        # a run recorded for a task outside the registry carries its random_error in its config
        given = df.pop("config").map(lambda c: json.loads(c).get("random_error"))
        df.insert(df.columns.get_loc("device"), "random_error",
                  [random_error(t) if g is None else float(g)
                   for t, g in zip(df["task"], given, strict=True)])
        df["source"] = "bayes_prune"
        df = df.astype({"test_mistakes": "int64", "params_prunable": "int64"})
        return validate(df, source=str(self.path))
