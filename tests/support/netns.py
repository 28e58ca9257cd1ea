"""Hosts for topology tests: network namespaces on a private bridge, and a private PostgreSQL.

Everything is made by the test and torn down in ``finally``: a bridge on a random private
/24 (the root namespace holds ``.1``, where shared servers listen), one namespace per host
with a veth into the bridge, and, for the database host, a PostgreSQL cluster created with
``initdb`` in a temporary directory and listening on the bridge address only (the machine's
own PostgreSQL listens on 127.0.0.1, which a namespace cannot reach). Needs root.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Host:
    netns: str
    address: str

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *command]


@dataclass
class Network:
    """A bridge ``<prefix>.1`` in the root namespace and hosts ``<prefix>.2`` onwards."""

    prefix: str
    bridge: str
    hosts: list[Host] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"{self.prefix}.1"


def _free_prefix() -> str:
    """A random private ``10.a.b`` /24 that no interface of the root namespace is on: tests
    run in parallel (pytest-xdist) each make their own bridge, and two bridges on one subnet
    would route each other's hosts. OS randomness, not ``random``'s state, which a test may
    seed identically in two workers."""
    pick = random.SystemRandom()
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                           timeout=30).stdout  # fmt: skip
    used = {word.split("/")[0].rsplit(".", 1)[0] for word in shown.split() if "/" in word}
    while True:
        prefix = f"10.{pick.randint(64, 250)}.{pick.randint(1, 250)}"
        if prefix not in used:
            return prefix


@contextlib.contextmanager
def network(n_hosts: int) -> Iterator[Network]:
    """``n_hosts`` namespaces on a fresh bridge; all of it deleted on the way out."""
    if os.geteuid() != 0:
        raise PermissionError("network namespaces need root (CI runs these tests as root)")
    tag = uuid.uuid4().hex[:6]
    net = Network(_free_prefix(), f"dlbr{tag}")
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        for i in range(n_hosts):
            host = Host(f"dl-{tag}-{i}", f"{net.prefix}.{i + 2}")
            _ip("netns", "add", host.netns)
            net.hosts.append(host)
            outer = f"dlv{tag}{i}"
            _ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            _ip("link", "set", outer, "master", net.bridge, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "route", "add", "default", "via", net.gateway)
        yield net
    finally:
        for host in net.hosts:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", host.netns)  # takes its veth pair with it
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", net.bridge)


def _pg_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, else Debian's versioned directory (newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                        key=lambda p: int(p.parts[-3]))  # fmt: skip
    if not candidates:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed")
    return str(candidates[-1])


@contextlib.contextmanager
def private_postgres(listen: str, port: int | None = None) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on ``listen:port`` (trust auth; no port: a free one on
    ``listen``, so tests running in parallel never ask for the same); yields its URL."""
    from driftloop.supervise import free_port

    port = port or free_port(listen)
    root = Path(tempfile.mkdtemp(prefix="driftloop-pg-"))
    data = root / "data"
    as_pg = ["runuser", "-u", "postgres", "--"]
    try:
        shutil.chown(root, "postgres")
        subprocess.run(
            [*as_pg, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
             "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        with open(data / "pg_hba.conf", "a") as hba:  # the bridge's hosts, and only them
            hba.write(f"host all all {listen.rsplit('.', 1)[0]}.0/24 trust\n")
        options = (
            f"-c listen_addresses={listen} -p {port} -k {root} -c fsync=off"
            " -c synchronous_commit=off -c max_connections=200"
        )
        subprocess.run(
            [*as_pg, _pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
             "-w", "-t", "60", "start"],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
        yield f"postgresql://postgres@{listen}:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_pg, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True, timeout=60,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout}s")


@contextlib.contextmanager
def private_redis(bind: str = "127.0.0.1") -> Iterator[str]:
    """A throwaway ``redis-server`` (no persistence) on a free port; yields its URL. Prefect's
    Redis streams have fixed names, so a test never shares the machine's Redis with others."""
    import socket

    with socket.socket() as s:
        s.bind((bind, 0))
        port = s.getsockname()[1]
    root = Path(tempfile.mkdtemp(prefix="driftloop-redis-"))
    proc = subprocess.Popen(
        ["redis-server", "--bind", bind, "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import redis

        client = redis.Redis(host=bind, port=port, socket_connect_timeout=1)
        wait_for(lambda: _pings(client), 30, 0.1, "redis-server up")
        yield f"redis://{bind}:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False
