"""The results store on SQLite and on a real PostgreSQL server: idempotent schema creation under
concurrency, in-place upgrades, and claims that let exactly one runner take a search."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from tunebench.store import Store


# A real PostgreSQL server belongs to the slow tier (`make test-slow`, run by CI after `make test`).
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tunebench.db'}"
    return request.getfixturevalue("postgres_url")


def test_exactly_one_of_many_concurrent_claims_wins(url):
    Store(url).close()
    stores = [Store(url) for _ in range(8)]
    won: list[int] = []
    barrier = threading.Barrier(len(stores))

    def claim(i: int) -> None:
        barrier.wait()
        if stores[i].claim("search-a", f"runner-{i}"):
            won.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    holder = stores[0].claim_of("search-a")
    assert holder is not None and holder["token"] == f"runner-{won[0]}"
    # a stale claim is taken over by exactly one of two racers (compare and swap on the token)
    assert stores[1].take_over_claim("search-a", holder["token"], "new-1") is True
    assert stores[2].take_over_claim("search-a", holder["token"], "new-2") is False
    stores[1].release_claim("search-a", "new-2")  # not the holder: nothing happens
    assert stores[1].claim_of("search-a")["token"] == "new-1"
    stores[1].release_claim("search-a", "new-1")
    assert stores[1].claim_of("search-a") is None
    for s in stores:
        s.close()


def test_schema_creation_is_idempotent_when_many_workers_start_at_once(url):
    code = "import sys; from tunebench.store import Store; Store(sys.argv[1]).close(); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(5)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, [err[-800:] for _, err in results]
    store = Store(url)  # and once more, on the existing schema
    assert {"runs", "trials", "epochs", "claims"} <= set(sa.inspect(store.engine).get_table_names())
    store.close()


def test_an_older_store_is_upgraded_in_place_without_losing_rows(url):
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the runs table as an early tunebench wrote it
        conn.execute(sa.text("CREATE TABLE runs (id INTEGER PRIMARY KEY, search_key VARCHAR(64) NOT NULL, "
                             "suite VARCHAR(200) NOT NULL, dataset VARCHAR(200) NOT NULL, "
                             "dataset_options JSON NOT NULL, model_family VARCHAR(200) NOT NULL, "
                             "model_options JSON NOT NULL, strategy VARCHAR(200) NOT NULL, "
                             "strategy_options JSON NOT NULL, seed INTEGER NOT NULL, budget_s FLOAT NOT NULL, "
                             "status VARCHAR(20) NOT NULL, created_at FLOAT NOT NULL, test_score FLOAT)"))
        conn.execute(sa.text("INSERT INTO runs VALUES (7, 'k', 's', 'digits', '{}', 'mlp', '{}', 'random', '{}', "
                             "0, 10.0, 'ok', 1.0, 0.93)"))
    engine.dispose()
    store = Store(url)
    run = store.run(7)
    assert run["test_score"] == pytest.approx(0.93) and run["status"] == "ok"
    assert "attempt" in run and "dispatched_at" in run and run["attempt"] is None
    store.update_run(7, attempt=1, executor="ray")
    assert store.run(7)["executor"] == "ray"
    store.close()


def _new_run(store: Store) -> int:
    return store.create_run(search_key="k", suite="s", dataset="d", model_family="m", strategy="random", seed=0,
                            budget_s=10.0)


def test_lanes_of_one_search_get_distinct_trial_numbers_and_the_best_trial_wins(url):
    """The processes sharing one search (parallel trials) race for trial numbers and for the run's
    best: every number is handed out once, in order, and the best score is the one recorded."""
    Store(url).close()
    stores = [Store(url) for _ in range(6)]
    run_id = _new_run(stores[0])
    numbers: list[int] = []
    barrier = threading.Barrier(len(stores))

    def take(i: int) -> None:
        barrier.wait()
        for _ in range(10):
            n = stores[i].next_trial_number(run_id)
            numbers.append(n)
            trial = stores[i].start_trial(run_id, n, started_at=time.time())
            score = (n * 37 % 61) / 61
            stores[i].record_epoch(run_id, trial, 0, {"val_accuracy": score}, 1.0, score=score, best_epoch=0,
                                   best={"best_trial": n})

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == list(range(60))
    best = max(range(60), key=lambda n: n * 37 % 61)
    run = stores[0].run(run_id)
    assert run["best_trial"] == best and run["best_val"] == pytest.approx((best * 37 % 61) / 61)
    worse = stores[0].start_trial(run_id, 99, started_at=time.time())
    assert stores[0].record_epoch(run_id, worse, 0, {"val_accuracy": 0.0}, 1.0, score=0.0, best_epoch=0,
                                  best={"best_trial": 99}) is False  # a worse score changes nothing
    assert [stores[0].lane_done(run_id) for _ in range(2)] == [1, 2]
    for s in stores:
        s.close()


@pytest.mark.slow
def test_the_readmes_plain_postgresql_url_works_from_the_command_line(postgres_url, tmp_path):
    """README writes `--store postgresql://...`: SQLAlchemy's default driver for that form is
    psycopg 3, while the `postgres` extra installs psycopg2; the URL must still work as written, for
    the store and for an Optuna strategy's `storage:`."""
    from tests.conftest import TESTING_PLUGINS, tunebench, write_suite

    plain = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    suite = write_suite(tmp_path / "suite.yaml", f"""
budget: 8s
max_epochs: 1
first_trial: none
datasets: [{{digits: {{limit: 300}}}}]
model_families: [{{scripted: {{}}}}]
strategies: [{{optuna_tpe: {{max_trials: 2, storage: "{plain}"}}}}]
""")
    result = tunebench("run", str(suite), "--store", plain, "--results", str(tmp_path / "results"),
                       "--plugin", TESTING_PLUGINS)
    assert result.returncode == 0, result.stderr[-3000:]
    store = Store(plain)
    runs = store.runs()
    assert len(runs) == 1 and runs[0]["status"] == "ok"
    assert len(store.trials([runs[0]["id"]])) == 2
    listed = tunebench("leaderboard", "--store", plain, "--format", "csv")
    assert listed.returncode == 0 and "optuna_tpe" in listed.stdout
    store.close()
