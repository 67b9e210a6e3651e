"""The results store: runs, trials and epochs, written through SQLAlchemy.

Embedded SQLite under the results directory by default (`results/tunebench.db`); any SQLAlchemy
URL (`postgresql://...`) works the same way. Every write is its own transaction, so a trial is
committed when it ends and each epoch when it ends: killing the runner loses at most the trial in
flight. Timestamps are Unix seconds (floats) so that budgets can be checked to the millisecond;
exports turn them into ISO 8601.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tunebench.databases import DRIVER_PACKAGES, database_url
from tunebench.errors import MissingDependencyError, StoreError, StoreURLError
from tunebench.vocabulary import DISK_FULL_SIGNS, FailureKind, RunStatus, TrialStatus

DB_NAME = "tunebench.db"


metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("search_key", sa.String(64), nullable=False, index=True),
    sa.Column("suite", sa.String(200), nullable=False),
    sa.Column("dataset", sa.String(200), nullable=False),
    sa.Column("dataset_options", sa.JSON, nullable=False, default=dict),
    sa.Column("model_family", sa.String(200), nullable=False),
    sa.Column("model_options", sa.JSON, nullable=False, default=dict),
    sa.Column("strategy", sa.String(200), nullable=False),
    sa.Column("strategy_options", sa.JSON, nullable=False, default=dict),
    sa.Column("dataset_label", sa.String(200)),
    sa.Column("model_label", sa.String(200)),
    sa.Column("strategy_label", sa.String(200)),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("budget_s", sa.Float, nullable=False),
    sa.Column("trial_budget_s", sa.Float),
    sa.Column("max_epochs", sa.Integer),
    sa.Column("objective", sa.String(100)),
    sa.Column("status", sa.String(20), nullable=False),  # a RunStatus
    sa.Column("stop_reason", sa.String(40)),  # completed, budget, killed, error
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),  # the strategy's clock starts
    sa.Column("finished_at", sa.Float),  # the strategy's clock stops
    sa.Column("completed_at", sa.Float),  # after the test evaluation
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("host", sa.String(200)),
    sa.Column("pid", sa.Integer),
    sa.Column("backend", sa.String(40)),
    sa.Column("versions", sa.JSON),
    sa.Column("hardware", sa.JSON),
    sa.Column("split_fingerprint", sa.String(64)),
    sa.Column("split_sizes", sa.JSON),
    sa.Column("data_notes", sa.JSON),
    sa.Column("n_trials", sa.Integer, default=0),
    sa.Column("best_trial", sa.Integer),
    sa.Column("best_val", sa.Float),
    sa.Column("best_params", sa.JSON),
    sa.Column("best_param_count", sa.Integer),
    sa.Column("test_score", sa.Float),
    sa.Column("test_metrics", sa.JSON),
    sa.Column("baselines", sa.JSON),  # majority class and random guessing, on the test split
    sa.Column("inference_ms", sa.Float),  # per image, selected model, on the run's device
    sa.Column("cpu_seconds", sa.Float),  # CPU time of the search (all threads)
    sa.Column("accelerator_seconds", sa.Float),  # wall time x accelerators held
    sa.Column("artifact_dir", sa.String(500)),
    sa.Column("executor", sa.String(20)),  # local, ray
    sa.Column("attempt", sa.Integer),  # 1, then 2, ... when a cluster retries a search
    sa.Column("retry_of", sa.Integer),  # the run this attempt replaces
    sa.Column("dispatched_at", sa.Float),  # a worker took the search; queueing = this - created_at
    sa.Column("lanes", sa.Integer),  # processes running the search's trials at once (parallel_trials)
    sa.Column("lanes_done", sa.Integer),  # lanes other than lane 0 that have finished
    sa.Column("next_trial", sa.Integer),  # trial numbers handed out so far (shared by the lanes)
    sa.Column("resumes", sa.Integer),  # times the search went on in a fresh process after a kill or crash
    # The family's default configuration (`first_trial: defaults`): its trial, validation and test scores.
    sa.Column("default_trial", sa.Integer),
    sa.Column("default_val", sa.Float),
    sa.Column("default_test_score", sa.Float),
    # A multi-objective search's rule for the configuration it tests, and its Pareto set (trial numbers).
    sa.Column("selection", sa.JSON),
    sa.Column("pareto", sa.JSON),
    # A search on a table's task on the simulated clock: its times are simulated seconds from 0, and
    # `table` holds the table's identity and version, the task and its known optimum.
    sa.Column("simulated", sa.Boolean),
    sa.Column("table", sa.JSON),
    # The strategy's own computing (its sampler), in seconds, over the search.
    sa.Column("sampler_seconds", sa.Float),
    # What the cost model left out of the search's space before its clock started (`space_costs`).
    sa.Column("space_costs", sa.JSON),
)

#: One row per search key being run or done by some runner: the lock that keeps two runners on one
#: store (or two nodes of a cluster) from running the same search twice.
claims = sa.Table(
    "claims", metadata,
    sa.Column("search_key", sa.String(64), primary_key=True),
    sa.Column("token", sa.String(200), nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Column("claimed_at", sa.Float, nullable=False),
)

trials = sa.Table(
    "trials", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("error_kind", sa.String(40)),
    sa.Column("params", sa.JSON, nullable=False, default=dict),
    sa.Column("seed", sa.Integer),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("score", sa.Float),
    sa.Column("best_epoch", sa.Integer),
    sa.Column("epochs_done", sa.Integer, default=0),
    sa.Column("epoch_budget", sa.Integer),
    sa.Column("param_count", sa.Integer),
    sa.Column("model_bytes", sa.Integer),
    sa.Column("metrics", sa.JSON),
    sa.Column("timings", sa.JSON),
    sa.Column("lane", sa.Integer),  # which of the search's processes ran it (parallel_trials)
    # How it was run: steps per compiled call and the step time it was chosen from, the feasibility
    # guard's projection, whether it was the family's default configuration.
    sa.Column("notes", sa.JSON),
    sa.Column("inference_ms", sa.Float),  # per image, measured for multi-objective searches
    # The strategy's own computing (its sampler) before this trial started, in seconds.
    sa.Column("sampler_s", sa.Float),
    sa.UniqueConstraint("run_id", "number"),
)

epochs = sa.Table(
    "epochs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False, index=True),
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("elapsed", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.UniqueConstraint("trial_id", "epoch"),
)


def _plain(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Column values as the database takes them: a vocabulary word (`TrialStatus.OK`) as its string."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in fields.items()}


def _inserted_id(result: sa.CursorResult[Any]) -> int:
    """The primary key of the row an INSERT created."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def default_url(results_dir: str | Path) -> str:
    return f"sqlite:///{Path(results_dir).resolve() / DB_NAME}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (progress, leaderboard) never block writers
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL, or None for another database."""
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def problem(exc: BaseException, url: str) -> str | None:
    """What a database error means for a user, or None if it is not one of those: a file that is not
    (or no longer) an SQLite database, an unreachable or read-only store."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig)
    where = sqlite_path(url) or url
    if any(s in text for s in ("file is not a database", "database disk image is malformed",
                               "malformed database schema")):
        return (f"the results store {where} is corrupt or not a tunebench store ({text}). Move it aside "
                f"(keep a copy if its results matter) and run again, or point --results at another folder")
    if any(sign in text for sign in DISK_FULL_SIGNS):
        return f"the results store {where} could not be written: the disk is full ({text})"
    if "readonly database" in text or "unable to open database file" in text:
        return f"the results store {where} cannot be opened for writing ({text}); is its folder writable?"
    if isinstance(exc, sa.exc.OperationalError):
        return f"the results store {where} failed: {text}"
    return None


@dataclass(frozen=True)
class Acquired:
    """What `Store.acquire` found. `taken`: the claim is the caller's now (`run`: the stale run it
    took over, if any). Otherwise `run` is the run the holder's claim is bound to (None if it has
    written none yet), and `holder` the holder's token (None when the claim changed hands meanwhile)."""

    taken: bool
    run: dict[str, Any] | None = None
    holder: str | None = None

    @property
    def finished(self) -> bool:
        """Another runner finished the search."""
        return not self.taken and self.run is not None and self.run["status"] == RunStatus.OK


class Store:
    """Reads and writes of one results store.

    Args:
        url: an SQLAlchemy URL (`sqlite:///PATH` by default, or `postgresql://...`).
        readonly: only read: nothing is created or upgraded (a missing store is an error), and an
            SQLite file is opened read-only (immutable when its folder is not writable), so read
            commands work on a read-only results folder. A store written by an older tunebench is
            read as it is: columns it lacks read as None.

    Raises:
        StoreError: the URL is not a database URL, its driver is not installed, the store does not
            exist (read-only) or is corrupt.
    """

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        url = database_url(url)
        self.url = url
        self.readonly = readonly
        self._absent: dict[str, set[str]] = {}
        try:
            self.engine = self._engine(url, readonly)
            if readonly:
                self._inspect()
            else:
                self._create_schema()
        except sa.exc.SQLAlchemyError as exc:
            described = problem(exc, url)
            if described is None:
                raise
            raise StoreError(described) from None

    @staticmethod
    def _engine(url: str, readonly: bool) -> sa.Engine:
        path = sqlite_path(url)
        try:
            if path is None:
                return sa.create_engine(url, pool_pre_ping=True)
            if readonly:
                if not path.is_file():
                    raise StoreError(f"no results store at {path}: run a suite first (`tunebench run SUITE`), "
                                     f"or point --results / --store at an existing one")
                import os
                from urllib.parse import quote

                frozen = "&immutable=1" if not os.access(path.parent, os.W_OK) else ""
                engine = sa.create_engine(f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro{frozen}&uri=true",
                                          connect_args={"timeout": 30})
                sa.event.listen(engine, "connect", _sqlite_read_pragmas)
                return engine
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the results folder {path.parent}: {exc.strerror or exc}") from None
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise StoreURLError(f"--store {url!r} is not a database URL SQLAlchemy knows ({exc}); write it like "
                                f"sqlite:////abs/path/tunebench.db or postgresql://user:password@host/dbname") from None
        except ModuleNotFoundError as exc:
            name = exc.name or "?"
            package = DRIVER_PACKAGES.get(name.split(".")[0], name)
            extra = " (or pip install 'tunebench[postgres]')" if "psycopg" in name else ""
            raise MissingDependencyError(f"--store {url!r} needs the database driver '{name}', which is not "
                                         f"installed: pip install {package}{extra}") from None

    def _inspect(self) -> None:
        """A read-only store: check it is one, and note the columns an older tunebench did not write."""
        inspector = sa.inspect(self.engine)
        tables = set(inspector.get_table_names())
        if "runs" not in tables:
            raise StoreError(f"{sqlite_path(self.url) or self.url} holds no tunebench results (no `runs` table)")
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)} if table.name in tables else set()
            self._absent[table.name] = {c.name for c in table.columns} - present

    def _select(self, table: sa.Table) -> sa.Select[Any]:
        absent = self._absent.get(table.name, set())
        return sa.select(*[c for c in table.columns if c.name not in absent])

    def _rows(self, rows: Iterable[Any], table: sa.Table) -> list[dict[str, Any]]:
        absent = self._absent.get(table.name, set())
        return [{**dict.fromkeys(absent), **dict(r)} for r in rows]

    def _create_schema(self) -> None:
        """Create or upgrade the tables; idempotent, and safe when many workers start at once (on
        PostgreSQL an advisory lock serialises them)."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(72163)"))
                try:
                    metadata.create_all(conn)
                    conn.commit()
                    self._add_missing_columns(conn)
                    conn.commit()
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(72163)"))
                    conn.commit()
        else:
            for attempt in range(5):  # create_all checks, then creates: another process may win in between
                try:
                    metadata.create_all(self.engine)
                    break
                except sa.exc.OperationalError as exc:
                    if "already exists" not in str(exc) or attempt == 4:
                        raise
            with self.engine.begin() as conn:
                self._add_missing_columns(conn)

    def _add_missing_columns(self, conn: sa.Connection) -> None:
        """Bring a store written by an earlier tunebench up to date: new columns are nullable and
        added in place, so results are never lost to an upgrade. Idempotent."""
        inspector = sa.inspect(conn)
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))

    @classmethod
    def open(cls, results_dir: str | Path, url: str | None = None, *, readonly: bool = False) -> Store:
        return cls(url or default_url(results_dir), readonly=readonly)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ------------------------------------------------------------------------------------
    def create_run(self, status: RunStatus | str = RunStatus.RUNNING, **fields: Any) -> int:
        fields.setdefault("created_at", time.time())
        with self.engine.begin() as conn:
            return _inserted_id(conn.execute(runs.insert().values(status=RunStatus(status).value, **fields)))

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Record facts about a run (times, provenance, totals); its status changes through the
        methods below."""
        if "status" in fields:
            raise ValueError("a run's status changes through dispatch_run, finish_run, fail_run or interrupt_run")
        self._update_run(run_id, **fields)

    def _update_run(self, run_id: int, **fields: Any) -> None:
        fields = _plain(fields)
        if isinstance(fields.get("error"), str):
            fields["error"] = fields["error"][:4000]
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**fields))

    def dispatch_run(self, run_id: int, **fields: Any) -> None:
        """A process took the run: it is `running`."""
        self._update_run(run_id, status=RunStatus.RUNNING, dispatched_at=time.time(), **fields)

    def finish_run(self, run_id: int, **fields: Any) -> None:
        """The run ended with its selected configuration evaluated on test: `ok`."""
        fields.setdefault("completed_at", time.time())
        self._update_run(run_id, status=RunStatus.OK, **fields)

    def fail_run(self, run_id: int, error: str, **fields: Any) -> None:
        """The run ended without a test score: `failed`, with why."""
        fields.setdefault("completed_at", time.time())
        self._update_run(run_id, status=RunStatus.FAILED, error=error, **fields)

    def interrupt_run(self, run_id: int, why: str) -> None:
        """The process running it was lost: the run and its trials in flight are `interrupted`, and
        the next `tunebench run` runs the search again."""
        self.close_open_trials(run_id, TrialStatus.INTERRUPTED, why)
        self._update_run(run_id, status=RunStatus.INTERRUPTED, error=why)

    def next_trial_number(self, run_id: int) -> int:
        """Hand out the run's next trial number: 0, 1, 2, ...; atomic, so the processes sharing one
        search (its lanes) never get the same number."""
        with self.engine.begin() as conn:
            value = conn.execute(runs.update().where(runs.c.id == run_id)
                                 .values(next_trial=sa.func.coalesce(runs.c.next_trial, 0) + 1)
                                 .returning(runs.c.next_trial)).scalar_one()
        return int(value) - 1

    def lane_done(self, run_id: int) -> int:
        """Count one more finished lane of a shared search; returns how many have finished."""
        with self.engine.begin() as conn:
            return int(conn.execute(runs.update().where(runs.c.id == run_id)
                                    .values(lanes_done=sa.func.coalesce(runs.c.lanes_done, 0) + 1)
                                    .returning(runs.c.lanes_done)).scalar_one())

    def start_trial(self, run_id: int, number: int, *, started_at: float, seed: int | None = None,
                    params: Mapping[str, Any] | None = None, lane: int = 0) -> int:
        with self.engine.begin() as conn:
            trial_id = _inserted_id(conn.execute(trials.insert().values(
                run_id=run_id, number=number, status=TrialStatus.RUNNING.value, started_at=started_at, seed=seed,
                params=dict(params or {}), lane=lane)))
            conn.execute(runs.update().where(runs.c.id == run_id).values(heartbeat_at=started_at))
        return int(trial_id)

    def record_epoch(self, run_id: int, trial_id: int, epoch: int, metrics: Mapping[str, float],
                     elapsed: float, *, score: float | None = None, best_epoch: int | None = None,
                     best: Mapping[str, Any] | None = None) -> bool:
        """Commit one completed epoch and where its trial stands, in one transaction.

        Args:
            score, best_epoch: the trial's best validation score so far and its epoch (so a trial
                killed later keeps them).
            best: offer the trial as the run's best (`best_trial`, `best_params`, ...) when `score`
                beats the run's recorded best: its weights file is already in place.

        Returns:
            Whether the trial became the run's best.
        """
        now = time.time()
        became_best = False
        with self.engine.begin() as conn:
            conn.execute(epochs.insert().values(trial_id=trial_id, epoch=epoch, metrics=dict(metrics),
                                                elapsed=elapsed, finished_at=now))
            conn.execute(trials.update().where(trials.c.id == trial_id).values(
                score=score, best_epoch=best_epoch, epochs_done=epoch + 1, metrics=dict(metrics)))
            conn.execute(runs.update().where(runs.c.id == run_id).values(heartbeat_at=now))
            if best is not None and score is not None:
                result = conn.execute(runs.update()
                                      .where(runs.c.id == run_id,
                                             sa.or_(runs.c.best_val.is_(None), runs.c.best_val < score))
                                      .values(best_val=score, **best))
                became_best = bool(result.rowcount)
        return became_best

    def update_trial(self, trial_id: int, **fields: Any) -> None:
        """Record what is known of a trial in flight (its hyperparameters once built)."""
        with self.engine.begin() as conn:
            conn.execute(trials.update().where(trials.c.id == trial_id).values(**_plain(fields)))

    def finish_trial(self, trial_id: int, **fields: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(trials.update().where(trials.c.id == trial_id).values(**_plain(fields)))
            run_id = conn.execute(sa.select(trials.c.run_id).where(trials.c.id == trial_id)).scalar_one()
            count = self._count(conn, trials.c.run_id == run_id)
            conn.execute(runs.update().where(runs.c.id == run_id).values(n_trials=count,
                                                                          heartbeat_at=time.time()))

    @staticmethod
    def _count(conn: sa.Connection, *where: Any) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(trials).where(*where)).scalar_one())

    def trial_count(self, run_id: int) -> int:
        """How many trials the run has recorded (every lane's, finished or not)."""
        with self.engine.connect() as conn:
            return self._count(conn, trials.c.run_id == run_id)

    def open_trials(self, run_id: int) -> int:
        """How many of the run's trials are still `running` (in flight, in any lane)."""
        with self.engine.connect() as conn:
            return self._count(conn, trials.c.run_id == run_id, trials.c.status == TrialStatus.RUNNING.value)

    def close_open_trials(self, run_id: int, status: str, error: str, finished_at: float | None = None,
                          *, lane: int | None = None, error_kind: str = FailureKind.KILLED) -> int:
        """Give trials still marked `running` a final status (after a kill or a crash); only one
        lane's when `lane` is given."""
        where = [trials.c.run_id == run_id, trials.c.status == TrialStatus.RUNNING.value]
        if lane is not None:
            where.append(trials.c.lane == lane)
        with self.engine.begin() as conn:
            result = conn.execute(trials.update().where(*where)
                                  .values(**_plain({"status": status, "error": error, "error_kind": error_kind,
                                                    "finished_at": finished_at or time.time()})))
            return int(result.rowcount or 0)

    def record_simulated(self, run: Mapping[str, Any], trial_rows: Iterable[Mapping[str, Any]]) -> int:
        """Write a whole simulated search, its run row and every trial, in one transaction: a
        simulated search is repeatable, so nothing of it is written before it ends. Returns the run id."""
        now = time.time()
        fields = _plain({**run, "simulated": True, "created_at": run.get("created_at", now),
                         "completed_at": now, "heartbeat_at": now})
        columns = {c.name for c in trials.columns}
        with self.engine.begin() as conn:
            run_id = _inserted_id(conn.execute(runs.insert().values(**fields)))
            rows = [_plain({k: v for k, v in t.items() if k in columns}) | {"run_id": run_id} for t in trial_rows]
            if rows:
                conn.execute(trials.insert(), rows)
        return run_id

    # -- claims: one runner per search ---------------------------------------------------------------
    def claim(self, search_key: str, token: str) -> bool:
        """Take the search for `token`; False if another runner holds it (an atomic insert)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(claims.insert().values(search_key=search_key, token=token, claimed_at=time.time()))
            return True
        except sa.exc.IntegrityError:
            return False

    def claim_of(self, search_key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(claims).where(claims.c.search_key == search_key)).mappings().first()
        return dict(row) if row else None

    def take_over_claim(self, search_key: str, old_token: str, token: str) -> bool:
        """Take a stale claim; exactly one of several runners racing for it wins (compare and swap)."""
        with self.engine.begin() as conn:
            result = conn.execute(claims.update().where(claims.c.search_key == search_key,
                                                        claims.c.token == old_token)
                                  .values(token=token, run_id=None, claimed_at=time.time()))
            return (result.rowcount or 0) == 1

    def acquire(self, search_key: str, token: str,
                stale: Callable[[dict[str, Any], dict[str, Any] | None], bool]) -> Acquired:
        """Claim a search for `token`, taking over a stale claim: the one rule that real and simulated
        runners share. A claim bound to a finished run is never stale; `stale(claim, run)` decides
        for the others (`run`: the run the claim is bound to, or None if none was written yet)."""
        if self.claim(search_key, token):
            return Acquired(True)
        held = self.claim_of(search_key)
        if held is None:  # released in between
            return Acquired(self.claim(search_key, token))
        run = self.run(held["run_id"]) if held["run_id"] is not None else None
        if run is not None and run["status"] == RunStatus.OK:
            return Acquired(False, run, held["token"])
        if stale(held, run) and self.take_over_claim(search_key, held["token"], token):
            return Acquired(True, run)
        return Acquired(False, run, held["token"])

    def bind_claim(self, search_key: str, token: str, run_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(claims.update().where(claims.c.search_key == search_key, claims.c.token == token)
                         .values(run_id=run_id))

    def release_claim(self, search_key: str, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(claims.delete().where(claims.c.search_key == search_key, claims.c.token == token))

    # -- reads -------------------------------------------------------------------------------------
    def run(self, run_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(self._select(runs).where(runs.c.id == run_id)).mappings().one()
        return self._rows([row], runs)[0]

    def runs(self, *, suite: str | None = None, ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        query = self._select(runs).order_by(runs.c.id)
        if suite is not None:
            query = query.where(runs.c.suite == suite)
        if ids is not None:
            query = query.where(runs.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return self._rows(conn.execute(query).mappings(), runs)

    def latest_runs(self, search_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The newest run of each search key, if any."""
        keys = list(search_keys)
        if not keys:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(self._select(runs).where(runs.c.search_key.in_(keys))
                                .order_by(runs.c.id)).mappings()
            return {r["search_key"]: r for r in self._rows(rows, runs)}

    def trials(self, run_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        query = self._select(trials).order_by(trials.c.run_id, trials.c.number)
        if run_ids is not None:
            query = query.where(trials.c.run_id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            return self._rows(conn.execute(query).mappings(), trials)

    def trial_frame(self, run_ids: Iterable[int] | None = None,
                    columns: Iterable[str] = ("run_id", "number", "status", "error_kind", "score", "started_at",
                                              "finished_at", "epochs_done", "epoch_budget", "sampler_s")) -> Any:
        """Some scalar columns of the trials of `run_ids` as a pandas DataFrame, read in one query
        without decoding any JSON: what the statistics of a study of millions of trials need."""
        import pandas as pd

        absent = self._absent.get("trials", set())
        wanted = [c for c in columns if c not in absent]
        query = sa.select(*[trials.c[c] for c in wanted])
        if run_ids is not None:
            ids = list(run_ids)
            chunks = [ids[i:i + 900] for i in range(0, len(ids), 900)] or [[]]
        else:
            chunks = [None]  # type: ignore[list-item]
        frames = []
        with self.engine.connect() as conn:
            for chunk in chunks:
                q = query if chunk is None else query.where(trials.c.run_id.in_(chunk))
                frames.append(pd.DataFrame(conn.execute(q).fetchall(), columns=wanted))
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=wanted)
        for c in columns:
            if c not in frame:
                frame[c] = None
        return frame

    def epochs(self, trial_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        query = self._select(epochs).order_by(epochs.c.trial_id, epochs.c.epoch)
        if trial_ids is not None:
            query = query.where(epochs.c.trial_id.in_(list(trial_ids)))
        with self.engine.connect() as conn:
            return self._rows(conn.execute(query).mappings(), epochs)
