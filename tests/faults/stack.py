"""The fault suite's own stack: a PostgreSQL and a Redis on private ports, and the product on them.

    stack = Stack.create()          # initdb, start both servers, migrate, start web, worker, beat
    stack.redis.flushall()
    stack.product.worker.kill()     # SIGKILL to the worker's whole process group
    stack.postgres.stop(); stack.postgres.start()
    stack.close()                   # stops everything it started, removes its folder

Everything lives under one temporary folder (`base`); the machine's shared servers are never used.
PostgreSQL runs as the `postgres` user (initdb refuses root), with fsync off: its data is thrown away.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from portal import processes as product_processes
from tests.faults import processes
from tests.faults.processes import free_port, signal_group, tail

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT = 90.0

#: Short intervals, so a scenario converges in seconds (the `intervals` fixture can drop them).
SHORT_INTERVALS = {
    "TASK_RELAY_SECONDS": "1",
    "TASK_RESEND_SECONDS": "2",
    "RECONCILE_INTERVAL_SECONDS": "2",
    "DEPLOY_CLAIM_SECONDS": "6",
}
#: A successful request in gunicorn's access log.
ACCESS_OK = re.compile(r'^\S+ - - \[[^]]*\] "[^"]*" [23]\d\d ')
#: The environment a product process inherits from ours; every portal setting is set explicitly.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: int(path.split("/")[4]))
    if not found:
        raise RuntimeError(f"no PostgreSQL {name} under /usr/lib/postgresql/*/bin")
    return found[-1]


def wait_for(check: Callable[[], object], timeout: float, what: str, details: Callable[[], str] = str):
    """Poll `check` until it returns something true; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not after {timeout:g}s\n{details()}")
        time.sleep(0.05)


class Postgres:
    """A throwaway PostgreSQL cluster on a private port, run as the `postgres` user."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.port = free_port()

    def _as_postgres(self, *argv: str, timeout: float = 60) -> None:
        """Run a PostgreSQL program as the `postgres` user (as ourselves when we are not root)."""
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.folder,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}\n{tail(self.log)}")

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._as_postgres(
            pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        pg_ctl = [pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options]
        self._as_postgres(*pg_ctl, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Fast shutdown: sessions are cut, as in a failover or a restart by an operator."""
        self._as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: down and up again in one go (its options are remembered)."""
        pg_ctl = [pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log)]
        self._as_postgres(*pg_ctl, "-m", "fast", "-w", "-t", "60", "restart")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(Exception):
                self.stop()


class Redis:
    """A Redis with no persistence on a private port: `flushall`, `shutdown`, `start` again."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.log = folder / "redis.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
                + ["--save", "", "--appendonly", "no"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self.answers, 20, f"redis on port {self.port}", lambda: tail(self.log))

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def flushall(self, queue: str = "portal") -> int:
        """Wipe everything; returns how many task messages were waiting or unacknowledged then."""
        with self.client() as client:
            pipe = client.pipeline(transaction=True)
            pipe.llen(queue).hlen("unacked").flushall()
            waiting, unacked, _ = pipe.execute()
        return waiting + unacked

    def shutdown(self) -> None:
        """SHUTDOWN NOSAVE: the server goes, and with it every message it held."""
        if not self.running():
            return
        with contextlib.suppress(redis.RedisError), self.client() as client:
            client.shutdown(nosave=True)
        assert self.process is not None
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        self.shutdown()


class Service:
    """One of the product's processes (web, worker, beat), in a process group of its own."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool]):
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.ready = ready
        self.process: subprocess.Popen | None = None
        self._offset = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running")
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def started() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            return self.ready()

        wait_for(started, START_TIMEOUT, f"{self.name} ready", self.tail)

    def since_start(self) -> str:
        """What this run of the process logged so far."""
        try:
            with open(self.log, "rb") as log:
                log.seek(self._offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the group (a warm shutdown), then SIGKILL to whatever is left of it."""
        if self.process is None:
            return
        if self.alive():
            signal_group(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole process group, as a machine dying would: no cleanup at all."""
        if self.process is None:
            return
        group = self.process.pid
        signal_group(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        deadline = time.monotonic() + 10
        while _group_members(group) and time.monotonic() < deadline:
            time.sleep(0.05)


def _group_members(group: int) -> list[int]:
    members = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(pid))
    return members


class Product:
    """Web (gunicorn), worker and beat, as `portal.processes` runs them, on the private stack."""

    def __init__(self, base: Path, database_url: str, broker_url: str, ports: tuple[int, int]):
        self.base = base
        self.var = base / "var"
        self.runtime_dir = base / "rt"
        self.logs = base / "logs"
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env = {key: os.environ[key] for key in INHERITED if key in os.environ}
        self.env.update(
            {
                "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "DJANGO_SETTINGS_MODULE": "portal.settings",
                "PYTHONUNBUFFERED": "1",
                "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": broker_url,
                "VAR_DIR": str(self.var),
                "LOCAL_RUNTIME_DIR": str(self.runtime_dir),
                "LOCAL_RUNTIME_PORT_MIN": str(ports[0]),
                "LOCAL_RUNTIME_PORT_MAX": str(ports[1]),
                "RUNTIME": "local",
                "WEB_WORKERS": "2",
                "WORKER_CONCURRENCY": "2",
                "LOG_LEVEL": "INFO",
                **SHORT_INTERVALS,
            }
        )
        for folder in (self.var, self.runtime_dir, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.web = self._service("web", product_processes.web(f"127.0.0.1:{self.web_port}"), self._web_ready)
        self.worker = self._service(
            "worker", product_processes.worker(), lambda: " ready." in self.worker.since_start()
        )
        self.beat = self._service(
            "beat", product_processes.beat(), lambda: "beat: Starting..." in self.beat.since_start()
        )

    @property
    def services(self) -> list[Service]:
        return [self.web, self.worker, self.beat]

    def _service(self, name: str, argv: list[str], ready: Callable[[], bool]) -> Service:
        argv = [str(BIN / argv[0]), *argv[1:]]
        return Service(name, argv, self.env, self.logs / f"{name}.log", ready)

    def _web_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v1/auth/token/", timeout=2).status_code == 405
        except httpx.HTTPError:
            return False

    def manage(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def reconfigure(self, values: dict[str, str | None]) -> None:
        """Stop every process, change settings (None: back to the product's default), start again."""
        self.stop()
        for key, value in values.items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.start()

    def start(self) -> None:
        for service in self.services:
            service.start()

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def ensure_running(self) -> None:
        for service in self.services:
            if not service.alive():
                service.start()

    def logs_text(self, lines: int = 30) -> str:
        """The last lines each process logged (web's successful requests left out)."""
        parts = []
        for service in self.services:
            text = service.tail(lines * 20 if service is self.web else lines)
            if service is self.web:
                text = "\n".join([line for line in text.splitlines() if not ACCESS_OK.search(line)][-lines:])
            parts.append(f"--- {service.name} log (last {lines} lines) ---\n{text}")
        return "\n".join(parts)


class Stack:
    """PostgreSQL, Redis and the product, under one temporary folder."""

    def __init__(self, base: Path):
        self.base = base
        self.postgres = Postgres(base / "pg")
        self.redis = Redis(base / "redis")
        self.product: Product | None = None

    @classmethod
    def create(cls, setup: Callable[[Product], None] | None = None) -> Stack:
        base = Path(tempfile.mkdtemp(prefix="faults-"))
        base.chmod(0o755)  # the postgres user walks through it to its own folder
        stack = cls(base)
        try:
            stack.postgres.init()
            stack.postgres.start()
            stack.postgres.create_database("portal")
            stack.redis.start()
            product = Product(base, stack.postgres.url("portal"), stack.redis.url(0), processes.port_block())
            stack.product = product
            product.manage("migrate", "--noinput")
            if setup is not None:
                setup(product)
            product.start()
        except BaseException:
            stack.close()
            raise
        return stack

    def ensure_running(self) -> None:
        """Bring back whatever a scenario left stopped."""
        if not self.postgres.running():
            self.postgres.start()
        if not self.redis.running():
            self.redis.start()
        assert self.product is not None
        self.product.ensure_running()

    def logs_text(self, lines: int = 30) -> str:
        parts = [self.product.logs_text(lines)] if self.product else []
        parts.append(f"--- postgres log ---\n{tail(self.postgres.log, 10)}")
        parts.append(f"--- redis log ---\n{tail(self.redis.log, 10)}")
        return "\n".join(parts)

    def close(self) -> None:
        """Stop everything this stack started, then remove its folder."""
        if self.product is not None:
            for service in reversed(self.product.services):
                with contextlib.suppress(Exception):
                    service.stop(timeout=10)
        processes.sweep(str(self.base))  # serving processes, their launcher, the upload sandbox
        self.redis.close()
        self.postgres.close()
        processes.sweep(str(self.base))
        shutil.rmtree(self.base, ignore_errors=True)
