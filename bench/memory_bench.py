"""Redis memory per RefId, through the project's own backlog (`make bench-memory`).

    python -m bench.memory_bench [--refs 1000000] [--seed 7] [--breakdown]

Starts a throw-away redis-server of its own on a free port of 127.0.0.1 (no persistence,
noeviction; never the Redis on 6379), and on one account and one OA, only through
engine.backlog.Backlog:

    parked   N RefIds shaped like eSMS's SMSIDs (a UUID4 and two digits, 38 characters, from
             a seed) parked in submissions of 1,000 at a fixed moment
    pending  each leased in requests of 100 and settled as a drainer settles a pending(7)
             answer: asked once, its event summary kept, due again 900 s later
    done     901 s later, each leased again and settled finished with a sent answer: what
             stays is the done memory (ESMS_DONE_TTL, 48 h here)

`used_memory` (INFO memory) is read before parking and after each phase; a phase's bytes per
RefId are (used_memory then - before parking) / N. `--breakdown` adds MEMORY USAGE of the five
largest keys and of each kind of key after each phase. The targets are fixed here; a row that
misses one says so (exit 1). Progress goes to stderr, the tables to stdout; the redis-server is
stopped by its pid on exit, Ctrl-C and failures included.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.harness import measured, stop_on_sigterm
from esms_callbacks.cli.processes import ROOT, Child, Command, free_port
from esms_callbacks.engine.backlog import Backlog, Requeue, Tally
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.redis_connect import connect
from esms_callbacks.esms.records import outcome_of
from esms_callbacks.events.publish import build_event, event_summary

ACCOUNT = "bench-mem"
OA = "1090257973118325189"
NOW_S = 1_764_300_000.0  # a fixed moment: the RefIds' submission, the first asks
SUBMISSION = 1000  # RefIds a fetch_callbacks call parks
REQUEST_REFS = 100  # RefIds a GetCallback request carries
LEASE_S = 60.0
REPOLL_AFTER_S = 900.0  # a pending RefId is due again this long after its ask
DONE_TTL_S = 172_800  # ESMS_DONE_TTL's default: 48 h
PARKED, PENDING, DONE = "parked", "pending", "done (remembered)"
TARGET_BYTES = {PARKED: 120, PENDING: 200, DONE: 100}  # per RefId; fixed, never fitted
TOP_KEYS = 5
START_TIMEOUT_S = 10.0

Say = Callable[[str], None]


@dataclass
class Phase:
    name: str
    refs: int  # RefIds the phase handled
    used_bytes: int  # used_memory above the baseline taken before parking
    took_s: float
    keys: int  # DBSIZE after it
    calls: int  # park submissions, or requests leased and settled
    top: list[tuple[str, str, str, int, int]] = field(default_factory=list)  # key, type, ...
    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (keys, bytes)

    @property
    def per_ref(self) -> float:
        return self.used_bytes / self.refs if self.refs else 0.0

    @property
    def met(self) -> bool:
        return self.per_ref <= TARGET_BYTES[self.name]


def sms_ids(count: int, seed: int = 7) -> list[str]:
    """RefIds shaped like eSMS's SMSIDs, `4a496110-9fd3-4838-ac8b-bcaa36616f7011`: a UUID4
    and two digits, 38 characters, the same for the same seed."""
    rnd = random.Random(seed)
    return [
        f"{uuid.UUID(int=rnd.getrandbits(128), version=4)}{rnd.randrange(100):02d}"
        for _ in range(count)
    ]


def start_redis(directory: Path) -> tuple[Child, str]:
    """A redis-server of our own on a free port (no RDB, no AOF, noeviction), answering PING;
    return it and its URL. Its output goes to redis-server.log in `directory`."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
    server = Child("redis-server", Command(argv), os.environ, directory / "redis-server.log")
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            with redis.Redis(port=port, socket_connect_timeout=0.2) as probe:
                return bool(probe.ping())
        except redis.ConnectionError:
            return False

    try:
        server.wait_until(answers, START_TIMEOUT_S, f"answer PING on port {port}")
    except BaseException:
        server.stop()
        raise
    return server, url


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def park_all(backlog: Backlog, ids: list[str]) -> int:
    """Park `ids` in submissions of 1,000; return the submissions."""
    calls = added = 0
    for start in range(0, len(ids), SUBMISSION):
        added += backlog.park(OA, ids[start : start + SUBMISSION], NOW_S).added
        calls += 1
    if added != len(ids):
        raise RuntimeError(f"parked {added:,} new RefIds of {len(ids):,}")
    return calls


def drive(backlog: Backlog, at_s: float, finish: bool, expected: int) -> int:
    """Lease every RefId due at `at_s` in requests of 100 and settle each request as a
    drainer settles its answer: pending(7) (asked again 900 s later) or, with `finish`, sent
    (remembered as done). Return the requests; raise unless `expected` RefIds went through."""
    observed_at = datetime.fromtimestamp(at_s, UTC)
    send_status, success = (5, 1) if finish else (7, 0)
    requests = refs = 0
    while True:
        token = uuid.uuid4().hex
        picked = backlog.lease_next(at_s, REQUEST_REFS, LEASE_S, token)
        if picked is None:
            break
        oa_id, batch = picked
        requests, refs = requests + 1, refs + len(batch)
        if refs > expected:
            raise RuntimeError(f"leased {refs:,} RefIds at {at_s:.0f}, expected {expected:,}")
        summaries: dict[str, str] = {}
        state_key = ""
        for item in batch:
            record = {
                "SMSID": item.ref_id,
                "SendStatus": send_status,
                "SendFailed": 0,
                "SendSuccess": success,
            }
            outcome = outcome_of(record)
            state_key = outcome.state_key
            submitted_at = datetime.fromtimestamp(item.submitted_s, UTC)
            event = build_event(item.ref_id, oa_id, outcome, observed_at, submitted_at)
            summaries[item.ref_id] = event_summary(event)
        tally = Tally(counters={"requests": 1, "refs_asked": len(batch)})
        if finish:
            backlog.settle(
                oa_id,
                token,
                at_s,
                finished=list(summaries),
                requeue=[],
                tally=tally,
                summaries=summaries,
                asked=True,
            )
        else:
            due_s = at_s + REPOLL_AFTER_S
            backlog.settle(
                oa_id,
                token,
                at_s,
                finished=[],
                requeue=[Requeue(ref, due_s, state_key, s) for ref, s in summaries.items()],
                tally=tally,
                summaries=None,
                asked=True,
            )
    if refs != expected:
        raise RuntimeError(f"leased {refs:,} RefIds at {at_s:.0f}, expected {expected:,}")
    return requests


def key_kind(key: str, keys: AccountKeys) -> str:
    """`oa:OA:c:*` for a chunk, `oa:OA:due` for the OA's due set, `stats` for the account's."""
    oa_prefix = keys.oa(OA)
    if key.startswith(oa_prefix):
        rest = key[len(oa_prefix) :]
        kind, sep, _ = rest.partition(":")
        return f"oa:OA:{kind}{':*' if sep else ''}"
    if key.startswith(keys.prefix + ":"):
        return key[len(keys.prefix) + 1 :]
    return key


def short_key(key: str, keys: AccountKeys) -> str:
    return key.replace(keys.oa(OA), "oa:OA:").replace(keys.prefix + ":", "")


def breakdown(client: redis.Redis, keys: AccountKeys, phase: Phase) -> None:
    """MEMORY USAGE (exact: SAMPLES 0) of every key, summed by kind, and the largest keys."""
    sizes: list[tuple[int, str]] = []
    batch: list[str] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        sizes.extend((int(size or 0), key) for size, key in zip(pipe.execute(), batch, strict=True))
        batch.clear()

    for raw in client.scan_iter(count=1000):
        batch.append(raw.decode() if isinstance(raw, bytes) else str(raw))
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    for size, key in sizes:
        count, total = phase.kinds.get(key_kind(key, keys), (0, 0))
        phase.kinds[key_kind(key, keys)] = (count + 1, total + size)
    for size, key in sorted(sizes, reverse=True)[:TOP_KEYS]:
        kind = _text(client.type(key))
        encoding = _text(client.object("encoding", key))
        length = {"hash": client.hlen, "zset": client.zcard, "set": client.scard}.get(kind)
        entries = int(length(key)) if length else 1
        phase.top.append((short_key(key, keys), kind, encoding, entries, size))


def measure(refs: int, seed: int, with_breakdown: bool, phases: list[Phase], say: Say) -> None:
    """Run the phases on a redis-server of our own, appending each to `phases` as it ends
    (those that ended stay there if a later one fails or is interrupted)."""
    ids = sms_ids(refs, seed)
    with tempfile.TemporaryDirectory(prefix="esms-memory-bench-") as directory:
        server, url = start_redis(Path(directory))
        say(f"redis-server pid {server.popen.pid} at {url}")
        try:
            client = connect(url)
            keys = AccountKeys(ACCOUNT)
            backlog = Backlog(client, keys, done_ttl_s=DONE_TTL_S)
            baseline = used_memory(client)
            say(f"baseline used_memory {baseline:,} B, {client.dbsize()} keys")

            def ended(name: str, started_s: float, calls: int) -> None:
                took_s = time.monotonic() - started_s
                phase = Phase(name, refs, used_memory(client) - baseline, took_s, 0, calls)
                phase.keys = int(client.dbsize())
                if with_breakdown:
                    breakdown(client, keys, phase)
                phases.append(phase)
                say(
                    f"{name}: {phase.per_ref:.1f} B a RefId, {phase.keys:,} keys, "
                    f"{took_s:.1f}s for {calls:,} calls"
                )

            say(f"parking {refs:,} RefIds in submissions of {SUBMISSION:,}")
            started_s = time.monotonic()
            ended(PARKED, started_s, park_all(backlog, ids))
            say(f"asking each once (pending), {REQUEST_REFS} a request")
            started_s = time.monotonic()
            ended(PENDING, started_s, drive(backlog, NOW_S, finish=False, expected=refs))
            say("asking each again (sent), remembered as done")
            started_s = time.monotonic()
            at_s = NOW_S + REPOLL_AFTER_S + 1
            ended(DONE, started_s, drive(backlog, at_s, finish=True, expected=refs))
            memory = client.info("memory")
            say(
                f"end: used_memory {int(memory['used_memory']):,} B, of which scripts "
                f"{int(memory.get('used_memory_scripts_eval', 0)):,} B"
            )
            client.close()
        finally:
            try:
                server.stop()  # SIGTERM to its pid (nothing to save), SIGKILL if it lingers
            except BaseException:  # a second Ctrl-C while it stops: SIGKILL now
                server.kill()
                raise
            say(f"redis-server pid {server.popen.pid} stopped")


def render(phases: list[Phase]) -> str:
    lines = [
        "| phase | RefIds | used_memory (MB) | bytes per RefId | target (B) | met | took (s) "
        "| per call (ms) | keys |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in phases:
        lines.append(
            f"| {p.name} | {p.refs:,} | {p.used_bytes / 1e6:.1f} | {p.per_ref:.0f} | "
            f"{TARGET_BYTES[p.name]} | {'yes' if p.met else 'no'} | {p.took_s:.1f} | "
            f"{p.took_s * 1000 / max(p.calls, 1):.2f} | {p.keys:,} |"
        )
    return "\n".join(lines)


def render_breakdown(phases: list[Phase]) -> str:
    out: list[str] = []
    for p in phases:
        if not p.kinds:
            continue
        out += [
            "",
            f"{p.name}: MEMORY USAGE by kind of key (OA = {OA})",
            "",
            "| keys | count | bytes (MB) | bytes per RefId |",
            "| --- | --- | --- | --- |",
        ]
        for kind, (count, total) in sorted(p.kinds.items(), key=lambda kv: -kv[1][1]):
            out.append(f"| {kind} | {count:,} | {total / 1e6:.2f} | {total / p.refs:.1f} |")
        total = sum(size for _, size in p.kinds.values())
        out.append(
            f"| all keys | {p.keys:,} | {total / 1e6:.2f} | {total / p.refs:.1f} "
            f"(used_memory: {p.per_ref:.1f}) |"
        )
        out += [
            "",
            f"{p.name}: the {TOP_KEYS} largest keys",
            "",
            "| key | type | encoding | entries | MEMORY USAGE (B) |",
            "| --- | --- | --- | --- | --- |",
        ]
        out += [f"| {k} | {t} | {e} | {n:,} | {size:,} |" for k, t, e, n, size in p.top]
    return "\n".join(out)


def heading(args: argparse.Namespace, elapsed_s: float, note: str) -> str:
    parts = [
        f"Redis memory benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"commit {_commit()}",
        _redis_version(),
        f"{args.refs:,} RefIds (seed {args.seed})",
        f"took {elapsed_s / 60:.1f} min",
    ]
    if note:
        parts.append(note)
    return (
        "\n" + ", ".join(parts) + "\n\nused_memory above the empty server's, in MB of 10^6 "
        "bytes; took: the phase's park or lease+settle calls (per call: a submission of "
        f"{SUBMISSION:,}, or a request of {REQUEST_REFS}); keys: DBSIZE after it.\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory_bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--refs", type=int, default=1_000_000, help="RefIds to park (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the RefIds (default %(default)s)"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help=f"MEMORY USAGE by kind of key and of the {TOP_KEYS} largest keys after each phase",
    )
    args = parser.parse_args(argv)
    if args.refs < 1:
        parser.error("--refs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    started = time.monotonic()
    phases: list[Phase] = []
    note, code = measured(lambda: measure(args.refs, args.seed, args.breakdown, phases, _say))
    print(heading(args, time.monotonic() - started, note))
    print(render(phases))
    if args.breakdown:
        print(render_breakdown(phases))
    if code:
        return code
    return 0 if all(p.met for p in phases) else 1


def _say(text: str) -> None:
    print(f"memory_bench: {text}", file=sys.stderr, flush=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis_version() -> str:
    try:
        found = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    except OSError:
        return "redis-server ?"
    words = dict(w.split("=", 1) for w in found.stdout.split() if "=" in w)
    return f"redis-server {words.get('v', '?')}"


def _commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "unknown"


if __name__ == "__main__":
    sys.exit(main())
