"""Start and stop the processes a load run or a fault test needs, all on the loopback interface.

Throwaway PostgreSQL clusters (``initdb`` in a temporary folder, owned by the ``postgres``
user when run as root) and Redis servers run on their own ports, so stopping one does not
touch the services the test suite or the developer uses. gunicorn and Celery workers run
this checkout's code with the environment given, nothing inherited that was not asked for.
"""

import contextlib
import glob
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# What a child process keeps from this one: the rest comes from the caller's ``env``.
INHERITED = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV"]
INHERITED.append("DJANGO_SETTINGS_MODULE")


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: from /usr/lib/postgresql/<version>/bin, else the PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def have_postgres_server() -> bool:
    return bool(pg_bin("initdb") and pg_bin("pg_ctl"))


def have_redis_server() -> bool:
    return bool(shutil.which("redis-server"))


def free_port(candidates: Iterable[int]) -> int:
    """The first port of ``candidates`` nobody listens on (and that can be bound) on 127.0.0.1."""
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the range given")


def wait_port(port: int, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def child_env(env: dict[str, str]) -> dict[str, str]:
    base = {k: os.environ[k] for k in INHERITED if k in os.environ}
    base["PATH"] = f"{VENV_BIN}:{base.get('PATH', '/usr/bin:/bin')}"
    return {**base, **env}


def run(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    """Run a command of this checkout (``manage.py …``) to completion; its standard output."""
    done = subprocess.run(
        args, cwd=ROOT, env=child_env(env), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    return run([sys.executable, "manage.py", *args], env, timeout=timeout)


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own in a temporary folder: start, stop (a crash), start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        # Under /tmp with a traversable parent: the postgres user must reach its data folder.
        self.root = Path(tempfile.mkdtemp(prefix="throwaway-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.data.mkdir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.data, "postgres", "postgres")
        self._pg(pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8")  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, *args: str | None) -> None:
        cmd = [a for a in args if a is not None]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._pg(pg_bin("pg_ctl"), "-D", str(self.data), "-o", options,
                 "-l", str(self.data / "server.log"), "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: as if the server crashed; ``fast``: a clean shutdown."""
        self._pg(pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class ThrowawayRedis:
    """A Redis server of its own (no persistence) on a port of its own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not wait_port(self.port, 20):
            raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)
            self.proc = None


def spawn(args: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    """Start a program of this checkout's virtualenv in its own session, output to ``log``."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (lives with the process)
    return subprocess.Popen(
        [str(VENV_BIN / args[0]), *args[1:]],
        cwd=ROOT,
        env=child_env(env),
        stdout=out,
        stderr=out,
        start_new_session=True,
    )


def start_gunicorn(
    env: dict[str, str], port: int, workers: int = 2, threads: int = 1, log: Path | None = None
) -> subprocess.Popen[bytes]:
    proc = spawn(
        ["gunicorn", "personalization.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
         "--threads", str(threads), "--timeout", "60", "--graceful-timeout", "5"],
        env,
        log,
    )  # fmt: skip
    if not wait_http(port, "/api/v1/consent-policy", 60):
        stop(proc)
        raise RuntimeError(f"gunicorn did not answer on {port}" + (f" (see {log})" if log else ""))
    return proc


def start_celery_worker(
    env: dict[str, str], concurrency: int = 1, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``celery -A personalization worker``, prefork: a killed child is a lost worker."""
    return spawn(
        ["celery", "-A", "personalization", "worker", "-l", "info", "-P", "prefork",
         "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env,
        log,
    )  # fmt: skip


def start_celery_beat(env: dict[str, str], folder: Path) -> subprocess.Popen[bytes]:
    """``celery -A personalization beat``, its schedule file in ``folder``."""
    return spawn(
        ["celery", "-A", "personalization", "beat", "-l", "info",
         "-s", str(folder / "celerybeat-schedule")],
        env,
        folder / "beat.log",
    )  # fmt: skip


def wait_http(port: int, path: str, seconds: float) -> bool:
    """Whether anything answers HTTP on ``port`` (any status) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
            return True
        except OSError:
            time.sleep(0.2)
        finally:
            conn.close()
    return False


def wait_log(path: Path, text: str, seconds: float) -> bool:
    """Whether ``text`` appears in the log file within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def children(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc)."""
    found: list[int] = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            found += [int(p) for p in Path(task).read_text().split()]
        except OSError:
            continue
    return found


def rss_kib(pids: Iterable[int]) -> int:
    """The resident memory of these processes, in KiB (VmRSS, Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def tree(pid: int) -> list[int]:
    """A process and its children (gunicorn's arbiter and workers, Celery's and its pool)."""
    return [pid, *children(pid)]


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, seconds: float = 15) -> None:
    """Stop a process this module started, and its process group (its own session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
