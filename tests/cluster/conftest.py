"""Real servers for the scale-out tests, started here and reachable only on loopback.

- `postgres_url`: a throwaway PostgreSQL cluster from Debian's `postgresql` package (initdb in a
  temporary directory, its own port, trust authentication on 127.0.0.1 only).
- `ray_address`: a Ray cluster on 127.0.0.1 with a head node and one extra worker node (two
  raylets, one CPU each), started with the `ray` command of this environment.

Without the servers' software the tests skip, unless TUNEBENCH_REQUIRE_SERVERS=1 (set by
`.ci/run`), which turns a missing server into a failure. Every test here is in the slow tier
(`make test-slow`): starting the servers and a cluster takes minutes.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REQUIRED = os.environ.get("TUNEBENCH_REQUIRE_SERVERS") == "1"


def _missing(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"{why} (TUNEBENCH_REQUIRE_SERVERS=1)")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@pytest.fixture(scope="session")
def postgres_server():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        _missing("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _missing("psycopg2 is not installed (pip install 'tunebench[postgres]')")
    bin_dir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="tunebench-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "tunebench", "-A", "trust",
                                 "--no-sync"]), check=True, capture_output=True)
    log = root / "server.log"
    if os.geteuid() == 0:
        log.touch()
        shutil.chown(log, "postgres")
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                                 "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                                       f"-c max_connections=200", "start"]), check=True, capture_output=True)
    try:
        yield {"port": port, "bin": bin_dir}
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh database on the session's server, per test."""
    import sqlalchemy as sa

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    admin = sa.create_engine(f"postgresql+psycopg2://tunebench@127.0.0.1:{postgres_server['port']}/postgres",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"postgresql+psycopg2://tunebench@127.0.0.1:{postgres_server['port']}/{name}"


@pytest.fixture(scope="session")
def ray_address():
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        _missing("Ray is not installed (pip install 'tunebench[ray]')")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats"]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    subprocess.run([str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--include-dashboard=false", *common], check=True, capture_output=True, env=env, timeout=120)
    try:
        # an extra worker node: searches spread over two raylets, as over two machines
        subprocess.run([str(ray_bin), "start", f"--address={address}", "--node-ip-address=127.0.0.1", *common],
                       check=True, capture_output=True, env=env, timeout=120)
        _wait_for_nodes(address, 2)
        yield address
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env, timeout=120)


def _wait_for_nodes(address: str, count: int, timeout: float = 60) -> None:
    code = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))")
    end = time.time() + timeout
    while time.time() < end:
        out = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=60)
        if out.stdout.strip().isdigit() and int(out.stdout.strip()) >= count:
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray cluster at {address} did not reach {count} nodes")

