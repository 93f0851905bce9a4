"""Real Redis topologies of a test's own: a Sentinel group (one primary, its replicas, three
sentinels) and a six-node Cluster, every redis-server a child process on a free port of
127.0.0.1, each with its own directory and log file. Failover timings are in
/tmp/research22/FINDINGS.md (sections 4 and 6): about down-after + 1.2 s for Sentinel and
node-timeout + 1.5 s for Cluster."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from esms_callbacks.cli.processes import free_port
from tests.helpers import wait_until

MASTER = "esms-test"  # the name the sentinels monitor the primary under
HOST = "127.0.0.1"
SERVER_OPTIONS = ("--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")
SENTINELS = 3
SENTINEL_QUORUM = 2
FAILOVER_TIMEOUT_MS = 5000
CLUSTER_NODES = 6
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
_QUERY_TIMEOUT_S = 0.5
_FORBIDDEN_PORT = 6379  # the shared local Redis: never ours


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports, none of them 6379 (or one below 1024)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports and port != _FORBIDDEN_PORT and port >= 1024:
            ports.append(port)
    return ports


def _query(port: int, *command: str | int) -> Any:
    """One command to the server on `port`, replies decoded to str. Given as separate words
    ("SENTINEL", "REPLICAS"), a command gets no redis-py reply callback: the reply is the
    server's own (RESP3 maps are dicts: redis-py 8 may speak RESP3)."""
    with redis.Redis(
        host=HOST,
        port=port,
        decode_responses=True,
        socket_timeout=_QUERY_TIMEOUT_S,
        socket_connect_timeout=_QUERY_TIMEOUT_S,
    ) as client:
        return client.execute_command(*command)


def _answers(query: Callable[[], bool]) -> bool:
    """`query()`, with a server that is down, loading or refusing read as False."""
    try:
        return query()
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return False


def _as_dict(reply: Any) -> dict[str, Any]:
    """A raw SENTINEL reply as a dict: a RESP3 map already is one, RESP2 gives [k1, v1, ...]."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[0::2], reply[1::2], strict=True))


def _replication_field(port: int, field: str) -> str:
    """One field of INFO replication on `port` ("" when absent)."""
    with redis.Redis(host=HOST, port=port, socket_timeout=_QUERY_TIMEOUT_S) as client:
        return str(client.info("replication").get(field, ""))


def _cluster_info(port: int) -> dict[str, str]:
    """CLUSTER INFO on `port` as a dict of its `field:value` lines."""
    lines = str(_query(port, "CLUSTER", "INFO")).splitlines()
    return dict(line.strip().partition(":")[::2] for line in lines if ":" in line)


def _role(port: int) -> str:
    """The role ROLE reports: "master" or "slave"."""
    return str(_query(port, "ROLE")[0])


def _link_up(port: int) -> bool:
    """Whether the replica on `port` has synced with its primary."""
    return _replication_field(port, "master_link_status") == "up"


def _wait_synced(port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """Until the replica on `port` shows master_link_status:up."""
    wait_until(lambda: _answers(lambda: _link_up(port)), timeout_s, f"replica {port} did not sync")


class _Server:
    """One redis-server child process: its port, its directory (`directory/NAME`) and its log
    file there (`redis.log`, stdout and stderr), killed by pid and started again in place."""

    def __init__(self, name: str, port: int, directory: Path, argv: Sequence[str]) -> None:
        self.name = name
        self.port = port
        self.directory = directory / name
        self.argv = list(argv)
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, extra: Sequence[str] = ()) -> None:
        """Start it (appending to its log); `extra` goes after its own arguments."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [*self.argv, *extra], cwd=self.directory, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_answering(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Return once it answers PING; RuntimeError (with its log) if it exits first."""
        wait_until(self._answers_ping, timeout_s, f"{self.name} did not answer on {self.port}")

    def kill(self) -> float:
        """SIGKILL and reap it; time.monotonic() of the signal."""
        popen = self._popen()
        killed_at = time.monotonic()
        popen.send_signal(signal.SIGKILL)
        popen.wait(timeout=10)
        return killed_at

    def terminate(self) -> None:
        """SIGTERM, if it runs (`reap` waits for the exit)."""
        if self.running and self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def reap(self, grace_s: float = STOP_GRACE_S) -> None:
        """Wait up to `grace_s` for it to exit, then SIGKILL it; nothing if it is gone."""
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def log_tail(self, chars: int = 2000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def _popen(self) -> subprocess.Popen[bytes]:
        if self.popen is None or self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} on port {self.port} is not running")
        return self.popen

    def _answers_ping(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} on port {self.port} exited ({self.popen.returncode}):\n"
                + self.log_tail()
            )
        return _answers(lambda: bool(_query(self.port, "PING")))


def _stop_all(servers: Sequence[_Server]) -> None:
    """SIGTERM every one at once, then wait for each (SIGKILL after the grace)."""
    for server in servers:
        server.terminate()
    for server in servers:
        server.reap()


class SentinelTopology:
    """One primary, `replicas` replicas and three sentinels monitoring it as MASTER, with
    `down_after_ms` as their down-after-milliseconds. `options` are extra arguments for the
    data servers (not the sentinels). `with SentinelTopology(...) as topology:` starts and
    stops it."""

    def __init__(
        self,
        directory: Path,
        replicas: int = 2,
        down_after_ms: int = 1000,
        options: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.down_after_ms = down_after_ms
        server_ports = free_ports(1 + replicas)
        self.servers = {
            port: _Server(f"server-{port}", port, directory, self._server_argv(port, options))
            for port in server_ports
        }
        self.initial_primary_port = server_ports[0]
        self.sentinels = [
            _Server(f"sentinel-{port}", port, directory, ["redis-server", "sentinel.conf"])
            for port in free_ports(SENTINELS)
        ]
        self._killed_at: dict[int, float] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> SentinelTopology:
        """Start the servers, then the sentinels; return once every replica has synced and
        all sentinels agree on the primary, its replicas and each other."""
        try:
            self._start_servers()
            self._start_sentinels()
            self.wait_for_sentinels_agreeing()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process (sentinels first, so they start no failover); idempotent."""
        _stop_all(self.sentinels)
        _stop_all(list(self.servers.values()))

    def __enter__(self) -> SentinelTopology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------

    @property
    def sentinel_ports(self) -> list[int]:
        return [sentinel.port for sentinel in self.sentinels]

    def url(self, db: int = 0) -> str:
        """Celery's (kombu's) form: `sentinel://127.0.0.1:P/db`, one per sentinel, `;`-joined."""
        return ";".join(f"sentinel://{HOST}:{port}/{db}" for port in self.sentinel_ports)

    def master_port(self) -> int:
        """The primary's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                return self._master_port_by(port)
        raise RuntimeError("no sentinel answered")

    def client_for(self, port: int) -> redis.Redis:
        """A plain client of the server on `port` (the caller closes it)."""
        return redis.Redis(host=HOST, port=port, socket_timeout=5, socket_connect_timeout=5)

    # -- faults ----------------------------------------------------------------------------

    def kill_primary(self) -> float:
        """kill -9 the current primary; time.monotonic() of the kill."""
        port = self.master_port()
        killed_at = self.servers[port].kill()
        self._killed_at[port] = killed_at
        return killed_at

    def wait_for_new_primary(self, old_port: int, timeout_s: float) -> float:
        """Wait until every sentinel names a master other than `old_port` and that server
        answers ROLE as master. Returns the seconds since `old_port` was killed by
        `kill_primary` (since this call if it was not); TimeoutError after `timeout_s`."""
        started_at = self._killed_at.get(old_port, time.monotonic())
        wait_until(
            lambda: _answers(lambda: self._promoted_from(old_port)),
            timeout_s,
            f"no new primary replaced {old_port} within {timeout_s}s",
        )
        return time.monotonic() - started_at

    def restart(self, port: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the killed server on `port` again, as a replica of the current master (with
        no data: nothing is persisted); return once it has synced and the sentinels see it."""
        server = self.servers[port]
        if server.running:
            raise RuntimeError(f"{server.name} is still running")
        server.start(["--replicaof", HOST, str(self.master_port())])
        server.wait_answering()
        _wait_synced(port, timeout_s)
        self._killed_at.pop(port, None)
        self.wait_for_sentinels_agreeing(timeout_s)

    # -- waiting ---------------------------------------------------------------------------

    def wait_for_sentinels_agreeing(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until every sentinel names the same running master, sees the other two sentinels,
        and lists every other running server as a healthy replica (flags `slave` only)."""
        wait_until(
            lambda: _answers(self._sentinels_agree),
            timeout_s,
            f"sentinels did not agree within {timeout_s}s",
        )

    def _sentinels_agree(self) -> bool:
        masters = {self._master_port_by(port) for port in self.sentinel_ports}
        if len(masters) != 1:
            return False
        master = masters.pop()
        if not self.servers[master].running or _role(master) != "master":
            return False
        expected_replicas = {p for p, s in self.servers.items() if s.running and p != master}
        return all(
            self._healthy_replicas_by(port) == expected_replicas
            and int(_as_dict(_query(port, "SENTINEL", "MASTER", MASTER))["num-other-sentinels"])
            == SENTINELS - 1
            for port in self.sentinel_ports
        )

    def _promoted_from(self, old_port: int) -> bool:
        masters = {self._master_port_by(port) for port in self.sentinel_ports}
        if len(masters) != 1 or old_port in masters:
            return False
        return _role(masters.pop()) == "master"

    def _master_port_by(self, sentinel_port: int) -> int:
        _host, port = _query(sentinel_port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(port)

    def _healthy_replicas_by(self, sentinel_port: int) -> set[int]:
        replicas = [_as_dict(r) for r in _query(sentinel_port, "SENTINEL", "REPLICAS", MASTER)]
        return {int(r["port"]) for r in replicas if r["flags"] == "slave"}

    # -- starting --------------------------------------------------------------------------

    def _server_argv(self, port: int, options: Sequence[str]) -> list[str]:
        argv = ["redis-server", "--port", str(port), "--bind", HOST, "--dir", "."]
        return [*argv, *SERVER_OPTIONS, *options]

    def _start_servers(self) -> None:
        for port, server in self.servers.items():
            primary = port == self.initial_primary_port
            server.start([] if primary else ["--replicaof", HOST, str(self.initial_primary_port)])
        for server in self.servers.values():
            server.wait_answering()
        for port in self.servers:
            if port != self.initial_primary_port:
                _wait_synced(port)

    def _start_sentinels(self) -> None:
        for sentinel in self.sentinels:
            sentinel.directory.mkdir(parents=True, exist_ok=True)
            (sentinel.directory / "sentinel.conf").write_text(self._sentinel_conf(sentinel.port))
            sentinel.start(["--sentinel"])
        for sentinel in self.sentinels:
            sentinel.wait_answering()

    def _sentinel_conf(self, port: int) -> str:
        """Its sentinel.conf (Sentinel rewrites it, so each sentinel has its own file)."""
        return "\n".join(
            [
                f"port {port}",
                f"bind {HOST}",
                "dir .",
                f"sentinel monitor {MASTER} {HOST} {self.initial_primary_port} {SENTINEL_QUORUM}",
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}",
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER} 1",
                "",
            ]
        )


class ClusterTopology:
    """Six cluster nodes (three primaries, one replica each) joined by `redis-cli --cluster
    create`, with `node_timeout_ms` as cluster-node-timeout. Each node's bus port is a free
    port of its own (`--cluster-port`), not port + 10000. `options` are extra server
    arguments. `with ClusterTopology(...) as cluster:` starts and stops it."""

    def __init__(
        self, directory: Path, node_timeout_ms: int = 2000, options: Sequence[str] = ()
    ) -> None:
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        ports = free_ports(2 * CLUSTER_NODES)
        data_ports, bus_ports = ports[:CLUSTER_NODES], ports[CLUSTER_NODES:]
        self.nodes = {
            port: _Server(f"node-{port}", port, directory, self._node_argv(port, bus, options))
            for port, bus in zip(data_ports, bus_ports, strict=True)
        }
        self._killed_at: dict[int, float] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ClusterTopology:
        """Start the nodes and create the cluster; return once every node reports
        cluster_state:ok and every replica has synced."""
        try:
            for node in self.nodes.values():
                node.start()
            for node in self.nodes.values():
                node.wait_answering()
            self._create()
            self.wait_for_cluster_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node; idempotent."""
        _stop_all(list(self.nodes.values()))

    def __enter__(self) -> ClusterTopology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        return list(self.nodes)

    def url(self) -> str:
        """`redis://127.0.0.1:<first node's port>/0` (a cluster client finds the rest)."""
        return f"redis://{HOST}:{self.ports[0]}/0"

    def owner_port(self, key: str) -> int:
        """The port of the primary serving `key`'s slot, as the first running node sees it."""
        asked = self._running_ports()[0]
        return self._owner_by(asked, int(_query(asked, "CLUSTER", "KEYSLOT", key)))

    def client_for(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of the node on `port` (the caller closes it)."""
        return redis.Redis(host=HOST, port=port, socket_timeout=5, socket_connect_timeout=5)

    # -- faults ----------------------------------------------------------------------------

    def kill_port(self, port: int) -> float:
        """kill -9 the node on `port`; time.monotonic() of the kill."""
        killed_at = self.nodes[port].kill()
        self._killed_at[port] = killed_at
        return killed_at

    def wait_for_promotion(self, old_port: int, key: str, timeout_s: float) -> float:
        """Wait until every running node says `key`'s slot is served by a primary other than
        `old_port` that answers ROLE as master, and reports cluster_state:ok. Returns the
        seconds since `old_port` was killed by `kill_port` (since this call if it was not);
        TimeoutError after `timeout_s`."""
        started_at = self._killed_at.get(old_port, time.monotonic())
        slot = int(_query(self._running_ports()[0], "CLUSTER", "KEYSLOT", key))
        wait_until(
            lambda: _answers(lambda: self._promoted_from(old_port, slot)),
            timeout_s,
            f"slot {slot} was not promoted away from {old_port} within {timeout_s}s",
        )
        return time.monotonic() - started_at

    # -- waiting ---------------------------------------------------------------------------

    def wait_for_cluster_ok(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until every running node reports cluster_state:ok and knows all six, and every
        replica among them has synced."""
        wait_until(
            lambda: _answers(self._cluster_ok),
            timeout_s,
            f"cluster not ok within {timeout_s}s",
        )

    def _cluster_ok(self) -> bool:
        return all(self._node_ok(port) for port in self._running_ports())

    def _node_ok(self, port: int) -> bool:
        """cluster_state:ok, all six nodes known, and synced if it is a replica."""
        info = _cluster_info(port)
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_known_nodes") == str(CLUSTER_NODES)
            and (_role(port) == "master" or _link_up(port))
        )

    def _promoted_from(self, old_port: int, slot: int) -> bool:
        running = self._running_ports()
        owners = {self._owner_by(port, slot) for port in running}
        if len(owners) != 1 or old_port in owners:
            return False
        owner = owners.pop()
        return _role(owner) == "master" and all(
            _cluster_info(port).get("cluster_state") == "ok" for port in running
        )

    def _owner_by(self, asked_port: int, slot: int) -> int:
        """The primary's port for `slot` in CLUSTER SLOTS as the node on `asked_port` has it."""
        for start, end, primary, *_replicas in _query(asked_port, "CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
        raise RuntimeError(f"slot {slot} is not covered according to {asked_port}")

    def _running_ports(self) -> list[int]:
        ports = [port for port, node in self.nodes.items() if node.running]
        if not ports:
            raise RuntimeError("no cluster node is running")
        return ports

    # -- starting --------------------------------------------------------------------------

    def _node_argv(self, port: int, bus_port: int, options: Sequence[str]) -> list[str]:
        argv = ["redis-server", "--port", str(port), "--bind", HOST, "--dir", "."]
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        argv += ["--cluster-port", str(bus_port)]
        argv += ["--cluster-node-timeout", str(self.node_timeout_ms)]
        return [*argv, *SERVER_OPTIONS, *options]

    def _create(self) -> None:
        """`redis-cli --cluster create` over the six nodes, one replica per primary."""
        addresses = [f"{HOST}:{port}" for port in self.ports]
        argv = ["redis-cli", "--cluster", "create", *addresses]
        argv += ["--cluster-replicas", "1", "--cluster-yes"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        (self.directory / "cluster-create.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"cluster create failed ({done.returncode}):\n{done.stdout}")
