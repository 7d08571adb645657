"""The suite's own services: a PostgreSQL cluster and a Docker engine, each stopped by PID.

Neither is the machine's shared one: the cluster is made with ``initdb`` in
the run's directory and listens on 127.0.0.1 at its own port, with its unix
socket in its own directory; the engine has its own socket, data root, exec
root and pidfile, and no network of its own (``--bridge=none``). Each is a
child process of the driver, started in a session of its own (a Ctrl-C in
the terminal reaches the driver only, which then stops them in order).
"""

from __future__ import annotations

import glob
import io
import os
import pwd
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

TEST_IMAGE = "container-manager-test/busybox:latest"
BUSYBOX = Path("/bin/busybox")


class DeadlineExceeded(Exception):
    """The run's global deadline passed."""


class ServiceError(Exception):
    """A service could not be set up, started or stopped."""


@dataclass
class Deadline:
    """The run's global deadline, as a monotonic time."""

    at: float

    def left(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        if time.monotonic() >= self.at:
            raise DeadlineExceeded("the run's duration limit passed")


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    deadline: Deadline | None = None,
    interval: float = 0.1,
) -> None:
    """Return once ``condition()`` is true; raise ServiceError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if deadline is not None:
            deadline.check()
        if time.monotonic() >= end:
            raise ServiceError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs and is not a zombie (``kill -0`` succeeds on zombies)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_process(
    proc: subprocess.Popen[Any], first: signal.Signals, grace: float, log: IO[str] | None = None
) -> int | None:
    """Send ``first`` to a child, wait ``grace`` seconds, then SIGKILL it; return its status."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(first)
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        if log is not None:
            log.write(f"pid {proc.pid} still up {grace:.0f} s after {first.name}; SIGKILL\n")
        proc.kill()
        return proc.wait(timeout=30)


def find_pg_bin() -> Path:
    """The newest Debian PostgreSQL binaries (``/usr/lib/postgresql/<v>/bin``)."""
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")],
    )
    if not found:
        raise ServiceError("no PostgreSQL binaries in /usr/lib/postgresql/*/bin")
    return found[-1]


class Postgres:
    """A PostgreSQL cluster of the run, on 127.0.0.1:``port``, stopped and started by PID."""

    def __init__(self, root: Path, port: int, log_path: Path) -> None:
        self.root = root
        self.port = port
        self.data = root / "pgdata"
        self.socket_dir = root / "pgsock"
        self.log_path = log_path
        self.bin = find_pg_bin()
        self.proc: subprocess.Popen[bytes] | None = None
        # initdb and postgres refuse to run as root; the Debian package's user runs them.
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ServiceError("running as root, and there is no user 'postgres'") from exc
            self.user = "postgres"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/chaos"

    def _own(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o700)

    def init(self) -> None:
        """Make the cluster (trust auth, no fsync: a crash of the machine is not simulated)."""
        self._own(self.root)
        self.root.chmod(0o755)
        self._own(self.data)
        self._own(self.socket_dir)
        with open(self.log_path, "ab") as log:
            result = subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user,
                cwd=self.root,
                timeout=120,
                check=False,
            )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed (status {result.returncode}), see {self.log_path}")

    def start(self, deadline: Deadline) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise ServiceError("PostgreSQL is already running")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server keeps it
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.socket_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=400",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self.user,
            cwd=self.root,
            start_new_session=True,
        )
        log.close()
        wait_for(self.ready, 60, "PostgreSQL start", deadline)

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise ServiceError(f"PostgreSQL exited during start-up, see {self.log_path}")
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
            timeout=10,
        )
        return result.returncode == 0

    def stop(self, grace: float = 60.0) -> None:
        """Fast shutdown (SIGINT to the postmaster): sessions are cut, the cluster stays intact."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT, grace)
            self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE chaos")


class DockerDaemon:
    """A dockerd of the run on a unix socket of its own, stopped and started by PID."""

    def __init__(self, root: Path, log_path: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.data_root = root / "docker-data"
        self.exec_root = root / "docker-exec"
        self.pidfile = root / "docker.pid"
        self.config_file = root / "daemon.json"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout: int = 10) -> Any:
        import docker

        return docker.APIClient(base_url=self.url, timeout=timeout, version="auto")

    def start(self, deadline: Deadline) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise ServiceError("dockerd is already running")
        if not Path(self.dockerd).exists():
            raise ServiceError("no dockerd (Debian package docker.io)")
        self.root.mkdir(parents=True, exist_ok=True)
        # An empty configuration file: nothing of the machine's /etc/docker/daemon.json.
        self.config_file.write_text("{}\n")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the daemon keeps it
        self.proc = subprocess.Popen(
            [
                self.dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "-H",
                self.url,
                "--data-root",
                str(self.data_root),
                "--exec-root",
                str(self.exec_root),
                "--pidfile",
                str(self.pidfile),
                "--config-file",
                str(self.config_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(self.ready, 90, "dockerd start", deadline, interval=0.2)

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise ServiceError(f"dockerd exited during start-up, see {self.log_path}")
        if not self.socket.exists():
            return False
        try:
            client = self.client(timeout=3)
        except Exception:
            return False
        try:
            client.ping()
            return True
        except Exception:
            return False
        finally:
            client.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 60.0) -> None:
        """SIGTERM to dockerd: it stops its containers and its containerd, then exits."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, grace)
            self.proc = None

    def import_test_image(self) -> None:
        """Import the busybox test image, as scripts/ensure-docker.sh builds it (no registry)."""
        if not BUSYBOX.exists():
            raise ServiceError("no /bin/busybox (Debian package busybox-static)")
        client = self.client(timeout=60)
        try:
            client.import_image_from_data(
                busybox_rootfs_tar(),
                repository=TEST_IMAGE.rpartition(":")[0],
                tag="latest",
                changes=["ENV PATH=/bin", 'CMD ["sh"]'],
            )
            client.inspect_image(TEST_IMAGE)
        finally:
            client.close()


def busybox_rootfs_tar() -> bytes:
    """A root filesystem holding only the static busybox with every applet linked, as a tar."""
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()

    def add(name: str, kind: bytes, mode: int, link: str = "", data: bytes = b"") -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.linkname = link
        info.size = len(data)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in ("bin", "etc", "root", "usr"):
            add(folder, tarfile.DIRTYPE, 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("bin/busybox", tarfile.REGTYPE, 0o755, data=BUSYBOX.read_bytes())
        for applet in applets:
            if applet != "busybox":
                add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("sbin", tarfile.SYMTYPE, 0o777, link="bin")
        add("usr/bin", tarfile.SYMTYPE, 0o777, link="../bin")
        add("usr/sbin", tarfile.SYMTYPE, 0o777, link="../bin")
        add(
            "etc/passwd",
            tarfile.REGTYPE,
            0o644,
            data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        add("etc/group", tarfile.REGTYPE, 0o644, data=b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def unmount_under(root: Path) -> None:
    """Lazily unmount whatever an engine that died left mounted under ``root``."""
    prefix = str(root) + "/"
    try:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            points = [line.split()[1] for line in fh]
    except OSError:
        return
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
