"""The results store: SQLite (stdlib), one row per (run, round), committed as each round ends.

Tables: ``runs`` (one row per IMP run: its config as JSON, status ``running`` / ``done`` /
``failed``, attempts, and the lease of the writer that runs it) and ``rounds`` (the
measurements of every finished round, primary key ``(run_id, round)`` so a round is stored
exactly once). Checkpoints that let an interrupted run resume from its last finished round live
beside the database in ``<store>.ckpt/``, written to a temporary file named after its writer and
renamed into place, and read with ``weights_only=True``.

Several processes (on one machine, or on several sharing the file system) may write one store
at once. A run is *claimed* in a transaction: the claim records the writer (pid, host, start
time, :class:`~bayes_prune.workers.Writer`) and a heartbeat, renewed with every committed round
and every :data:`HEARTBEAT` seconds. A run held by a live writer is left to it; a claim is taken
over when its writer is gone (on this host: its process has ended; on another host: no heartbeat
for :data:`LEASE` seconds). A round is only committed by the writer that holds its run's claim,
so no round is computed twice into the store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import closing, contextmanager
from pathlib import Path

import pandas as pd

from .errors import UserError
from .grid import validate
from .spec import RunConfig
from .workers import Writer, alive, check_parent

__all__ = ["Store", "ROUND_FIELDS", "Held", "LeaseLost", "LEASE", "HEARTBEAT", "read_only"]

ROUND_FIELDS = ("density", "test_error", "test_mistakes", "n_test", "train_loss", "params_total",
                "params_prunable", "params_nonzero", "seconds")
LEASE = 120.0  # seconds without a heartbeat after which another host's claim is stale
HEARTBEAT = 15.0  # seconds between lease renewals of a writer's running claims

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, config TEXT NOT NULL,
    task TEXT, arch TEXT, depth INTEGER, width INTEGER, n_train INTEGER, seed INTEGER,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
    device TEXT, code_version TEXT, updated REAL,
    owner_pid INTEGER, owner_host TEXT, owner_started REAL, heartbeat REAL);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL REFERENCES runs(run_id), round INTEGER NOT NULL,
    {", ".join(f"{f} REAL" for f in ROUND_FIELDS)}, created REAL,
    PRIMARY KEY (run_id, round));
"""
_LEASE_COLUMNS = (("owner_pid", "INTEGER"), ("owner_host", "TEXT"), ("owner_started", "REAL"),
                  ("heartbeat", "REAL"))
_MINE = "owner_pid=? AND owner_host=? AND owner_started=?"


class Held(RuntimeError):
    """The run is claimed by another live writer."""


class LeaseLost(RuntimeError):
    """This writer no longer holds the run's claim (another writer took it over)."""


def read_only(path: str | os.PathLike, sql: str, option: str = "--store") -> pd.DataFrame:
    """The rows of ``sql`` on the store at ``path``, opened read-only (no claim, no writer:
    for reports, cost models and the like). A missing file, or one that is not a store, is a
    one-line :class:`UserError` naming ``option``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{option} {p}: no such store")
    try:
        with closing(sqlite3.connect(f"file:{p}?mode=ro", uri=True)) as con:
            return pd.read_sql_query(sql, con)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        why = str(exc).rsplit(": ", 1)[-1]  # pandas quotes the whole query first
        raise UserError(f"{option} {p}: not a bayes-prune store ({why})") from None


def _check_file(path: Path, create: bool) -> None:
    """Refuse a directory, a missing store (``create=False``) and an empty file, before SQLite
    touches them (it would make an empty file a database). Other files that are not SQLite are
    refused by SQLite itself, which changes nothing. Only ``stat`` here: opening and closing the
    file would drop the POSIX locks this process's other connections hold on it."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an SQLite store file")
    if not path.exists():
        if not create:
            raise UserError(f"{path}: no such store")
        return
    # a new store's first transactions live in its write-ahead log until SQLite checkpoints them
    if path.stat().st_size == 0 and not path.with_name(path.name + "-wal").exists():
        raise UserError(f"{path}: an empty file, not an SQLite store; give the path of a "
                        "store written by `bayes-prune grid run`, or a new path")


def _create(path: Path, writer: Writer) -> None:
    """Create an empty store at ``path`` all at once: built under a temporary name and linked
    into place, so that a writer starting beside this one never sees a half-made file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{writer.tag}.tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    try:
        db.executescript(_SCHEMA)
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    try:
        os.link(tmp, path)  # fails if another writer created it first: then theirs is used
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not path.exists():
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Store:
    """An SQLite results store at ``path`` (created on first write unless ``create=False``),
    written by this process as :attr:`writer`."""

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        _check_file(self.path, create)
        self.writer = Writer.current()
        if not self.path.exists():
            _create(self.path, self.writer)
        self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            tables = {t for (t,) in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "runs" not in tables:
                raise UserError(f"{self.path}: an SQLite database, but not a bayes_prune store "
                                f"(no table 'runs'; it holds {', '.join(sorted(tables))})")
            have = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
            if create:  # a writer; a reader (export, status) changes nothing in the file
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(_SCHEMA)
                for name, kind in _LEASE_COLUMNS:  # a store written before leases existed
                    if name not in have:
                        self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
                have = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
            self._leases = all(name in have for name, _ in _LEASE_COLUMNS)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise UserError(f"{self.path}: not a bayes_prune store ({exc})") from None
        except UserError:
            self.db.close()
            raise
        self.ckpt_dir = self.path.with_name(self.path.name + ".ckpt")
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self.db.close()

    @contextmanager
    def _tx(self):
        """One write transaction, holding SQLite's write lock from its first statement."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:  # SQLite may have rolled back already
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _me(self) -> tuple:
        return (self.writer.pid, self.writer.host, self.writer.started)

    # ------------------------------------------------------------------ runs
    def run_status(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else None

    def statuses(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT run_id, status FROM runs"))

    def holders(self) -> dict[str, tuple[Writer, float | None, bool]]:
        """Every running run: ``run_id -> (writer, heartbeat, live)``; ``live`` is False when
        its claim may be taken over. Runs of a store written before leases have no holder."""
        out = {}
        if not self._leases:  # opened to read a store written before leases existed
            return out
        for run_id, pid, host, started, beat in self.db.execute(
                "SELECT run_id, owner_pid, owner_host, owner_started, heartbeat FROM runs "
                "WHERE status='running' AND owner_pid IS NOT NULL"):
            w = Writer(pid, host, started)
            out[run_id] = (w, beat, self._live(w, beat))
        return out

    def held_by_others(self) -> dict[str, Writer]:
        """Running runs claimed by another live writer: ``run_id -> writer``."""
        return {r: w for r, (w, _, live) in self.holders().items()
                if live and w != self.writer}

    def _live(self, w: Writer, heartbeat: float | None) -> bool:
        if w == self.writer:
            return True
        here = alive(w)
        if here is not None:
            return here
        return heartbeat is not None and time.time() - heartbeat < LEASE

    def claim(self, cfg: RunConfig, device: str, code_version: str, again: bool = False) -> bool:
        """Claim ``cfg`` for this writer (one more attempt), creating its row if new. True when
        this writer now holds it (or already did: then one more attempt only if ``again``);
        False when it is done or another live writer holds it. A taken-over run's stale
        temporary checkpoint files are removed."""
        now = time.time()
        with self._tx():
            row = self.db.execute(
                "SELECT status, owner_pid, owner_host, owner_started, heartbeat FROM runs "
                "WHERE run_id=?", (cfg.run_id,)).fetchone()
            if row is not None:
                status, pid, host, started, beat = row
                holder = Writer(pid, host, started) if pid is not None else None
                if status == "done":
                    return False
                if status == "running" and holder == self.writer:
                    if not again:
                        return True
                elif status == "running" and holder is not None and self._live(holder, beat):
                    return False
            self.db.execute(
                "INSERT INTO runs (run_id, config, task, arch, depth, width, n_train, seed, "
                "status, attempts, device, code_version, updated, owner_pid, owner_host, "
                "owner_started, heartbeat) VALUES (?,?,?,?,?,?,?,?,'running',1,?,?,?,?,?,?,?) "
                "ON CONFLICT(run_id) DO UPDATE SET status='running', attempts=attempts+1, "
                "error=NULL, device=excluded.device, updated=excluded.updated, "
                "owner_pid=excluded.owner_pid, owner_host=excluded.owner_host, "
                "owner_started=excluded.owner_started, heartbeat=excluded.heartbeat",
                (cfg.run_id, cfg.to_json(), cfg.task, cfg.arch, cfg.depth, cfg.width,
                 cfg.n_train, cfg.seed, device, code_version, now, *self._me(), now))
        for tmp in self.ckpt_dir.glob(f"{cfg.run_id}.pt*.tmp"):  # from a writer now gone
            tmp.unlink(missing_ok=True)
        self._start_heartbeat()
        return True

    def start(self, cfg: RunConfig, device: str, code_version: str) -> None:
        """Begin an attempt at ``cfg`` (:meth:`claim` it ``again``), or raise :class:`Held`
        naming the writer that holds it."""
        if not self.claim(cfg, device, code_version, again=True) \
                and self.run_status(cfg.run_id) != "done":
            holder = self.held_by_others().get(cfg.run_id)
            raise Held(f"run {cfg.run_id} is being run by "
                       f"{holder.describe() if holder else 'another writer'}")

    def status_counts(self) -> list[tuple[str, str, str, int]]:
        """``(arch, task, status, runs)`` over every run in the store, whatever wrote it."""
        return list(self.db.execute("SELECT arch, task, status, COUNT(*) FROM runs "
                                    "GROUP BY arch, task, status ORDER BY arch, task, status"))

    def open_run(self, run_id: str, config: str, task: str, arch: str, depth: int, width: int,
                 n_train: int, seed: int, device: str, code_version: str) -> None:
        """Create run ``run_id`` (``config``: its JSON) or count one more attempt, claimed by
        this writer (a run recorded by a user's own loop, :class:`bayes_prune.Recorder`); a
        run not done is marked running, a done one stays done."""
        now = time.time()
        with self._tx():
            self.db.execute(
                "INSERT INTO runs (run_id, config, task, arch, depth, width, n_train, seed, "
                "status, attempts, device, code_version, updated, owner_pid, owner_host, "
                "owner_started, heartbeat) VALUES (?,?,?,?,?,?,?,?,'running',1,?,?,?,?,?,?,?) "
                "ON CONFLICT(run_id) DO UPDATE SET "
                "status=CASE WHEN status='done' THEN 'done' ELSE 'running' END, "
                "attempts=attempts+1, error=NULL, device=excluded.device, "
                "updated=excluded.updated, owner_pid=excluded.owner_pid, "
                "owner_host=excluded.owner_host, owner_started=excluded.owner_started, "
                "heartbeat=excluded.heartbeat",
                (run_id, config, task, arch, depth, width, n_train, seed, device, code_version,
                 now, *self._me(), now))

    def finish(self, run_id: str) -> None:
        """Mark run ``run_id`` done."""
        with self._tx():
            self.db.execute("UPDATE runs SET status='done', updated=? WHERE run_id=?",
                            (time.time(), run_id))

    def fail(self, run_id: str, message: str) -> None:
        """Mark ``run_id`` failed, unless another writer has claimed it since."""
        with self._tx():
            self.db.execute(
                f"UPDATE runs SET status='failed', error=?, updated=?, heartbeat=NULL "
                f"WHERE run_id=? AND (owner_pid IS NULL OR ({_MINE}))",
                (message[:2000], time.time(), run_id, *self._me()))

    def _start_heartbeat(self) -> None:
        if self._beat is None:
            self._beat = threading.Thread(target=self._renew, daemon=True,
                                          name="store-heartbeat")
            self._beat.start()

    def _renew(self) -> None:
        """Heartbeat thread: renew this writer's running claims every :data:`HEARTBEAT` s, on
        its own connection."""
        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            while not self._stop.wait(HEARTBEAT):
                check_parent()
                try:
                    db.execute(f"UPDATE runs SET heartbeat=? WHERE status='running' AND {_MINE}",
                               (time.time(), *self._me()))
                except sqlite3.Error:
                    pass  # busy or gone: the next beat, or the next round's commit, renews
        finally:
            db.close()

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
        """Store one finished round (and, if it is the last, mark the run done) atomically,
        renewing this writer's claim. A round already stored is kept as it is (the key makes
        every round appear once). Raises :class:`LeaseLost`, committing nothing, when another
        writer holds the run now; a worker whose driver is gone exits here, before the commit."""
        check_parent()
        cols = ", ".join(ROUND_FIELDS)
        now = time.time()
        with self._tx():
            mine = self.db.execute(
                f"UPDATE runs SET heartbeat=?, updated=? WHERE run_id=? AND status='running' "
                f"AND {_MINE}", (now, now, run_id, *self._me())).rowcount
            if not mine:
                raise LeaseLost(f"run {run_id} is no longer claimed by this writer "
                                f"({self.writer.describe()}); another writer took it over")
            self.db.execute(
                f"INSERT OR IGNORE INTO rounds (run_id, round, {cols}, created) "
                f"VALUES (?, ?, {', '.join('?' * len(ROUND_FIELDS))}, ?)",
                (run_id, round_, *(values[f] for f in ROUND_FIELDS), now))
            if done:
                self.db.execute("UPDATE runs SET status='done', updated=? WHERE run_id=?",
                                (now, run_id))

    # ----------------------------------------------------------- checkpoints
    def checkpoint_path(self, run_id: str) -> Path:
        return self.ckpt_dir / f"{run_id}.pt"

    def temp_checkpoint_path(self, run_id: str) -> Path:
        """Where this writer writes ``run_id``'s checkpoint before renaming it into place:
        named after the writer, so two writers never rename each other's file."""
        final = self.checkpoint_path(run_id)
        return final.with_name(f"{final.name}.{self.writer.tag}.tmp")

    def save_checkpoint(self, run_id: str, state: dict) -> None:
        import torch

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.temp_checkpoint_path(run_id)
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path(run_id))

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
