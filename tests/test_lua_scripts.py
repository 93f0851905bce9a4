"""Every Lua script of esms_callbacks/engine/lua/ on its own, against real Redis.

Each script's header names every KEYS[n] and ARGV[n] it reads (with its preludes); no Python
format leftovers; it loads through the one loader (engine/scripts.py: the shebang and the
shared prelude in front) and runs with its documented KEYS and typical ARGV. Then the rules
that have one home each: the GCRA (gcra.lua, shared by the limiter's reserve and the push
inbox) and the breaker (breaker.lua, opened by breaker_failure.lua, gated by the commit).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.health import Breaker
from esms_callbacks.engine.keys import PUSHES_READY, AccountKeys
from esms_callbacks.engine.limiter import RateLimiter
from esms_callbacks.engine.locks import Lock
from esms_callbacks.engine.scripts import (
    LUA_DIR,
    PRELUDE,
    READ_ONLY,
    SHEBANG,
    lua_source,
    register_file,
    script_text,
)
from esms_callbacks.engine.semaphore import LeaseSemaphore
from esms_callbacks.engine.waiting import WaitingList
from esms_callbacks.events.stores import RedisEventStore
from esms_callbacks.push.inbox import PushRecorder
from esms_callbacks.push.parse import Push
from esms_callbacks.tuning import MARGIN_HALF_LIFE_S, MARGIN_STEP_S, MAX_WAITERS, STRICTEST_KEPT_S

# Files that only define functions for the scripts registered with them.
PRELUDES = {PRELUDE, "backlog_prelude", "limiter_spacing", "gcra", "breaker"}
# Every script, with the preludes its caller registers it with (after the shared prelude).
SCRIPTS: dict[str, tuple[str, ...]] = {
    "limiter_reserve": ("limiter_spacing", "gcra"),
    "limiter_hand_back": ("limiter_spacing",),
    "limiter_commit": ("limiter_spacing", "breaker"),
    "limiter_widen": ("limiter_spacing",),
    "limiter_mark_sent": (),
    "breaker_failure": ("breaker",),
    "semaphore_acquire": (),
    "lock_release": (),
    "lock_extend": (),
    "turns_join": (),
    "turns_leave": (),
    "turns_head": (),
    "inbox_record": ("gcra",),
    "inbox_ready": (),
    "consumer_remember": (),
    **{
        f"backlog_{name}": ("backlog_prelude",)
        for name in (
            "park",
            "lease",
            "renew",
            "settle",
            "unlease",
            "decide",
            "strike",
            "sweep",
            "counts",
            "where",
            "claim",
            "next",
            "migrate",
        )
    },
}
READ_ONLY_SCRIPTS = {"backlog_counts", "backlog_where", "backlog_next"}

SPACING_S = 0.05
# ARGV[1..5] of the scripts with limiter_spacing.lua, as RateLimiter passes them
SPACING_ARGS = [
    int(SPACING_S * 1e6),
    0,
    int(MARGIN_HALF_LIFE_S * 1e6),
    int(STRICTEST_KEPT_S * 1e6),
    MAX_WAITERS,
]


def header(text: str) -> str:
    """The leading comment block of a Lua file."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def code(text: str) -> str:
    """A Lua file without its comments (no string of these files holds a `--`)."""
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def indices_named(text: str) -> set[str]:
    """KEYS[n] and ARGV[n] (or ARGV[n..]) that the header of `text` names."""
    return {
        f"{m[1]}[{m[2]}]" for m in re.finditer(r"\b(KEYS|ARGV)\[(\d+)(?:\.\.)?\]", header(text))
    }


def indices_used(text: str) -> set[str]:
    return {f"{m[1]}[{m[2]}]" for m in re.finditer(r"\b(KEYS|ARGV)\[(\d+)\]", code(text))}


def format_leftovers(text: str) -> list[str]:
    """What a Python f-string or str.format would have left: `{int(`, `{NAME}`, `{{`,
    and Python constants (`MARGIN_HALF_LIFE_S`) in the code."""
    body = code(text)
    patterns = [
        r"\{\s*(?:int|float|str|round|repr|len)\(",
        r"\{[A-Z][A-Z0-9_]*\}",
        r"\{\{|\}\}",
        r"\b[A-Z][A-Z0-9_]*_(?:S|MS|US)\b",
    ]
    return [m.group(0) for pattern in patterns for m in re.finditer(pattern, body)]


def lua_files() -> set[str]:
    return {path.stem for path in LUA_DIR.glob("*.lua")}


# --- the files and the loader ------------------------------------------------------------


def test_every_lua_file_is_a_known_prelude_or_a_script_tested_here():
    assert lua_files() == PRELUDES | set(SCRIPTS)


class Recording:
    """A client that only records what is registered on it."""

    def __init__(self) -> None:
        self.sources: list[str] = []

    def register_script(self, source: str) -> Any:
        self.sources.append(source)
        return lambda **_: None


def test_the_table_above_is_what_the_classes_register():
    client: Any = Recording()
    keys = AccountKeys("recording")
    RateLimiter(client, (keys.rate, keys.paused, keys.health), 0.05, 0.0)
    Breaker(client, keys.health, trip_after=3, base_s=1.0, max_s=60.0)
    LeaseSemaphore(client, keys.drainers, lease_s=10)
    Lock(client, "recording-lock", ttl_s=10)
    WaitingList(client)
    PushRecorder(client, keys, per_source_rate=1.0, inbox_max=10)
    Backlog(client, keys, done_ttl_s=3600)
    RedisEventStore(client)
    expected = {
        script_text(*preludes, name, writes=name not in READ_ONLY_SCRIPTS)
        for name, preludes in SCRIPTS.items()
    }
    assert set(client.sources) == expected
    assert len(client.sources) == len(expected)  # each script registered once


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_header_names_every_key_and_argument_the_script_reads(name):
    script = lua_source(name)
    used = set().union(*(indices_used(lua_source(n)) for n in (*SCRIPTS[name], name)))
    assert header(script), f"{name}.lua has no header"
    assert used - indices_named(script) == set(), f"{name}.lua reads these undocumented"
    # and names none it does not read (ranges `ARGV[n..]` are read in loops)
    ranges = {f"ARGV[{m[1]}]" for m in re.finditer(r"ARGV\[(\d+)\.\.\]", header(script))}
    assert indices_named(script) - used - ranges == set(), f"{name}.lua documents stale ones"
    assert "Returns" in header(script)


@pytest.mark.parametrize("name", sorted(PRELUDES))
def test_a_prelude_documents_what_it_reads(name):
    text = lua_source(name)
    assert header(text)
    assert indices_used(text) <= indices_named(text)


@pytest.mark.parametrize("name", sorted(PRELUDES | set(SCRIPTS)))
def test_no_python_format_leftovers(name):
    assert format_leftovers(lua_source(name)) == []


def test_the_leftover_check_finds_leftovers():
    assert format_leftovers("return {int(300 * 1e6)} + {MARGIN_STEP_S}") == [
        "{int(",
        "{MARGIN_STEP_S}",
        "MARGIN_STEP_S",
    ]
    assert format_leftovers("local t = {{1}}  -- MARGIN_STEP_S") == ["{{", "}}"]
    assert format_leftovers("local out = {best}\nreturn {-1, 0}") == []


def test_the_loader_puts_the_shebang_then_the_shared_prelude_in_front():
    text = script_text("backlog_prelude", "backlog_settle")
    assert text.startswith(SHEBANG + lua_source(PRELUDE))
    assert text.index("local function now_us()") < text.index("local function bucket(")
    assert text.index("local function bucket(") < text.index(lua_source("backlog_settle"))
    assert text.endswith(lua_source("backlog_settle"))
    read_only = script_text("backlog_where", writes=False)
    assert read_only.startswith(READ_ONLY + lua_source(PRELUDE))
    for source in (text, read_only):  # one shebang line, the first; one prelude
        assert [line for line in source.splitlines() if line.startswith("#!")] == [
            source.splitlines()[0]
        ]
        assert source.count("local function now_us()") == 1


def test_the_redis_clock_lives_in_the_shared_prelude_only():
    reads_time = {n for n in lua_files() if "redis.call('TIME')" in lua_source(n)}
    assert reads_time == {PRELUDE}


def test_the_shared_prelude_reads_the_redis_clock_and_formats_integers(redis_client):
    before_s, before_us = redis_client.time()
    now, big, half, rounded = redis_client.eval(
        script_text()
        + "\nreturn {int_text(now_us()), int_text(2^53), int_text(12.25), int_text(2.6)}",
        0,
    )
    after_s, after_us = redis_client.time()
    assert before_s * 10**6 + before_us <= int(now) <= after_s * 10**6 + after_us
    assert (big, half, rounded) == (b"9007199254740992", b"12", b"3")


def test_the_loader_works_with_an_asyncio_client(redis_url, redis_client):
    keys = AccountKeys(f"lua-{uuid.uuid4().hex}")

    async def record() -> Any:
        client = aioredis.Redis.from_url(redis_url)
        try:
            recorder = PushRecorder(client, keys, per_source_rate=0, inbox_max=10)
            return await recorder.record(Push("r1", "oa", {"Status": "1"}), "10.0.0.1")
        finally:
            await client.aclose()

    try:
        assert asyncio.run(record()).ok
        assert redis_client.xlen(keys.pushes) == 1
    finally:
        redis_client.delete(keys.pushes, keys.stats)


# --- each script on its own --------------------------------------------------------------


@pytest.fixture
def account(redis_client: redis.Redis) -> Iterator[AccountKeys]:
    keys = AccountKeys(f"lua-{uuid.uuid4().hex}")
    yield keys
    stale = list(redis_client.scan_iter(match=f"{keys.prefix}*", count=1000))
    if stale:
        redis_client.delete(*stale)


def run(client: redis.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    """Run script `name` as its caller registers it."""
    script = register_file(client, *SCRIPTS[name], name, writes=name not in READ_ONLY_SCRIPTS)
    return script(keys=keys, args=args)


def redis_now_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 10**6 + int(micros)


def is_digits(value: Any) -> bool:
    return isinstance(value, bytes) and value.lstrip(b"-").isdigit()


def commit_args(window: tuple[int, int] = (0, 0)) -> list[int]:
    return [*SPACING_ARGS, *window, 60_000_000, 3_600_000_000, 250_000, 12_000]


def smoke_limiter_reserve(client: redis.Redis, k: AccountKeys) -> None:
    assert run(client, "limiter_reserve", [k.rate], [*SPACING_ARGS, 0]) == 0
    second = run(client, "limiter_reserve", [k.rate], [*SPACING_ARGS, 0])
    assert 0 < second <= SPACING_ARGS[0]
    assert run(client, "limiter_reserve", [k.rate], [*SPACING_ARGS, 1]) == -1  # too late
    assert is_digits(client.hget(k.rate, "tat_us"))


def smoke_limiter_hand_back(client: redis.Redis, k: AccountKeys) -> None:
    run(client, "limiter_reserve", [k.rate], [*SPACING_ARGS, 0])
    tat_us = int(client.hget(k.rate, "tat_us") or 0)
    assert run(client, "limiter_hand_back", [k.rate], SPACING_ARGS) == 1
    assert int(client.hget(k.rate, "tat_us") or 0) == tat_us - SPACING_ARGS[0]


def smoke_limiter_commit(client: redis.Redis, k: AccountKeys) -> None:
    keys = [k.rate, k.paused, k.health]
    status, at, failures, now = run(client, "limiter_commit", keys, commit_args())
    assert (status, failures) == (0, 0) and is_digits(at) and is_digits(now)
    status, wait, _, _ = run(client, "limiter_commit", keys, commit_args())
    assert status == 1 and 0 < int(wait) <= SPACING_ARGS[0]
    assert run(client, "limiter_commit", keys, commit_args((1, 2)))[:2] == [-1, 0]
    client.set(k.paused, "Code 101")
    assert run(client, "limiter_commit", keys, commit_args())[:2] == [-2, 0]


def smoke_limiter_mark_sent(client: redis.Redis, k: AccountKeys) -> None:
    _, at, _, _ = run(client, "limiter_commit", [k.rate, k.paused, k.health], commit_args())
    now = run(client, "limiter_mark_sent", [k.rate], [at, 0])
    assert is_digits(now) and int(now) >= int(at)
    assert client.hget(k.rate, "sending_us") is None
    assert int(client.hget(k.rate, "last_us") or 0) >= int(at)


def smoke_limiter_widen(client: redis.Redis, k: AccountKeys) -> None:
    step_us = int(MARGIN_STEP_S * 1e6)
    first = run(client, "limiter_widen", [k.rate], [*SPACING_ARGS, SPACING_ARGS[0], step_us])
    assert first == str(step_us).encode()
    second = run(client, "limiter_widen", [k.rate], [*SPACING_ARGS, SPACING_ARGS[0], step_us])
    assert 3 * step_us - 10 <= int(second) <= 3 * step_us  # doubled (barely faded) + a step


def smoke_breaker_failure(client: redis.Redis, k: AccountKeys) -> None:
    args = [2, 1_000_000, 60_000_000]
    assert run(client, "breaker_failure", [k.health], [*args, 0]) == [1, b"0"]
    in_a_row, wait = run(client, "breaker_failure", [k.health], [*args, 0])
    assert in_a_row == 2 and 999_000 < int(wait) <= 1_000_000
    assert client.hget(k.health, "probe_until_us") == b"0"


def smoke_semaphore_acquire(client: redis.Redis, k: AccountKeys) -> None:
    now_ms = int(time.time() * 1000)
    keys = [k.drainers, k.stopping("host")]
    assert run(client, "semaphore_acquire", keys, [now_ms, now_ms + 10_000, 1, "a"]) == 1
    assert run(client, "semaphore_acquire", keys, [now_ms, now_ms + 10_000, 1, "b"]) == 0
    client.set(k.stopping("host"), "1")
    assert run(client, "semaphore_acquire", keys, [now_ms, now_ms + 10_000, 1, "a"]) == 0
    assert client.zcard(k.drainers) == 0


def smoke_lock_release(client: redis.Redis, k: AccountKeys) -> None:
    lock = f"{k.prefix}:lock"
    client.set(lock, "b")  # taken by b once a's ran out
    assert run(client, "lock_release", [lock], ["a"]) == 0
    assert client.get(lock) == b"b"
    assert run(client, "lock_release", [lock], ["b"]) == 1
    assert not client.exists(lock)


def smoke_lock_extend(client: redis.Redis, k: AccountKeys) -> None:
    lock = f"{k.prefix}:lock"
    client.set(lock, "a", px=100)
    assert run(client, "lock_extend", [lock], ["a", 10_000]) == 1
    assert client.pttl(lock) > 9_000
    assert run(client, "lock_extend", [lock], ["b", 10_000]) == 0


def turns_keys(k: AccountKeys) -> list[str]:
    """A waiting list of the test's own (the deployment's is engine.keys.TURNS_*)."""
    return [f"{k.prefix}:turns-waiting", f"{k.prefix}:turns-renewed"]


def smoke_turns_join(client: redis.Redis, k: AccountKeys) -> None:
    keys = turns_keys(k)
    assert run(client, "turns_join", keys, [1000, "a"]) == b"1000"
    assert run(client, "turns_join", keys, [2000, "a"]) == b"1000"  # keeps its place
    assert client.zscore(keys[1], "a") == 2000  # renewed


def smoke_turns_leave(client: redis.Redis, k: AccountKeys) -> None:
    keys = turns_keys(k)
    run(client, "turns_join", keys, [1000, "a"])
    assert run(client, "turns_leave", keys, ["a"]) == 1
    assert run(client, "turns_leave", keys, ["a"]) == 0
    assert not client.exists(*keys)


def smoke_turns_head(client: redis.Redis, k: AccountKeys) -> None:
    keys = turns_keys(k)
    for name, at_ms in (("a", 1000), ("b", 2000), ("c", 3000)):
        run(client, "turns_join", keys, [at_ms, name])
    assert run(client, "turns_head", keys, [0, 0, 10, 10]) == [b"a", b"b", b"c"]
    assert run(client, "turns_head", keys, [0, 1, 1, 10]) == [b"b"]
    # renewed before 2000: a is dropped from both
    assert run(client, "turns_head", keys, [2000, 0, 10, 10]) == [b"b", b"c"]
    assert client.zrange(keys[1], 0, -1) == [b"b", b"c"]


def smoke_inbox_record(client: redis.Redis, k: AccountKeys) -> None:
    keys = [k.pushes, k.push_source("10.0.0.1"), k.stats]
    status, received_ms = run(client, "inbox_record", keys, [1_000_000, 0, 0, 1, "{}", ""])
    assert status == 1 and abs(received_ms - redis_now_us(client) / 1000) < 1000
    assert run(client, "inbox_record", keys, [1_000_000, 0, 0, 1, "{}", ""])[0] == 0  # rate
    assert run(client, "inbox_record", keys, [0, 0, 0, 1, "{}", ""]) == [-1, 0]  # full
    stats = client.hgetall(k.stats)
    assert stats == {
        b"pushes:accepted": b"1",
        b"pushes:rate_limited": b"1",
        b"pushes:inbox_full": b"1",
    }


def smoke_inbox_ready(client: redis.Redis, k: AccountKeys) -> None:
    other = f"{k.account_id}-other"
    assert run(client, "inbox_ready", [PUSHES_READY], [k.account_id]) == 1
    named_ms = client.zscore(PUSHES_READY, k.account_id)
    assert named_ms is not None
    assert abs(named_ms - redis_now_us(client) / 1000) < 1000  # the Redis clock, ms
    assert run(client, "inbox_ready", [PUSHES_READY], [k.account_id, other]) == 1
    assert client.zscore(PUSHES_READY, k.account_id) == named_ms  # kept: still the first
    assert client.zscore(PUSHES_READY, other) is not None
    client.zrem(PUSHES_READY, k.account_id, other)


OA = "oa1"
NOW_MS = 1_800_000_000_000


def parked(client: redis.Redis, k: AccountKeys, *refs: str) -> list[Any]:
    keys = [k.oas, k.known_oas, k.oa_queue, k.backlog_meta]
    return run(client, "backlog_park", keys, [k.oa(OA), NOW_MS, OA, 0, 100, "", *refs])  # type: ignore[no-any-return]


def leased(client: redis.Redis, k: AccountKeys, token: str = "tok") -> list[Any]:
    args = [k.oa_prefix, NOW_MS, NOW_MS + 60_000, 10, token]
    return run(client, "backlog_lease", [k.oas, k.oa_queue, k.backlog_meta], args)  # type: ignore[no-any-return]


def settle_keys(k: AccountKeys) -> list[str]:
    return [k.oas, k.stats, k.recent, k.health, k.oa_queue, k.backlog_meta]


def smoke_backlog_park(client: redis.Redis, k: AccountKeys) -> None:
    assert parked(client, k, "r1", "r2") == [2, 0]
    assert parked(client, k, "r1") == [0, 0]
    assert client.zrange(k.oa_queue, 0, -1, withscores=True) == [(OA.encode(), NOW_MS)]
    assert client.hget(k.backlog_meta, "refs") == b"2"


def smoke_backlog_lease(client: redis.Redis, k: AccountKeys) -> None:
    parked(client, k, "r1")
    assert leased(client, k) == [OA.encode(), b"r1", str(NOW_MS).encode(), b"", 0]
    assert client.zscore(k.oa_queue, OA) == NOW_MS + 60_000  # its lease's expiry
    assert leased(client, k) == []


def smoke_backlog_renew(client: redis.Redis, k: AccountKeys) -> None:
    parked(client, k, "r1")
    leased(client, k)
    args = [k.oa(OA), OA, "tok", NOW_MS + 120_000, 2, "r1", "gone", "r1", "delivered"]
    assert run(client, "backlog_renew", [k.oa_queue], args) == [b"gone"]
    assert client.zscore(k.oa_queue, OA) == NOW_MS + 120_000


def smoke_backlog_decide(client: redis.Redis, k: AccountKeys) -> None:
    parked(client, k, "r1")
    leased(client, k)
    assert run(client, "backlog_decide", [], [k.oa(OA), "tok", "r1", "delivered"]) == 1
    assert run(client, "backlog_where", [], [k.oa(OA), "r1"])[1].split(b"|")[3] == b"delivered"


def smoke_backlog_strike(client: redis.Redis, k: AccountKeys) -> None:
    parked(client, k, "r1")
    leased(client, k)
    args = [k.oa(OA), "tok", NOW_MS, "1", "r1", "r9"]
    assert run(client, "backlog_strike", [], args) == [1, 1, str(NOW_MS).encode(), 0, 0, b""]
    args = [k.oa(OA), "tok", NOW_MS + 5000, "", "r1"]  # not alone: the evidence stays as it was
    assert run(client, "backlog_strike", [], args) == [2, 1, str(NOW_MS).encode()]


def settle_args(k: AccountKeys, finished: list[str]) -> list[Any]:
    args: list[Any] = [k.oa(OA), OA, "tok", NOW_MS, len(finished), 0, 1, 0, "1"]
    for ref in finished:
        args += [ref, "delivered|1800000000|poll|"]
    return [*args, "requests", 1, "", "", "1"]


def smoke_backlog_settle(client: redis.Redis, k: AccountKeys) -> None:
    parked(client, k, "r1")
    leased(client, k)
    client.hset(k.health, "failures", 3)
    assert run(client, "backlog_settle", settle_keys(k), settle_args(k, ["r1"])) == 1
    assert client.hget(k.stats, "requests") == b"1"
    assert client.exists(k.health) == 0  # answered: the breaker closed
    assert run(client, "backlog_where", [], [k.oa(OA), "r1"])[0] == b"d"
    assert client.zcard(k.oa_queue) == 0  # nothing left to ask
    assert client.hget(k.backlog_meta, "refs") == b"0"


def smoke_backlog_unlease(client: redis.Redis, k: AccountKeys) -> None:
    parked(client, k, "r1")
    leased(client, k)
    args = [k.oa(OA), OA, "tok", NOW_MS + 5000, "r1"]
    assert run(client, "backlog_unlease", [k.oa_queue], args) == 1
    assert client.zscore(k.oa_queue, OA) == NOW_MS + 5000
    assert run(client, "backlog_where", [], [k.oa(OA), "r1"])[2:] == [
        str(NOW_MS + 5000).encode(),
        b"",
    ]


def smoke_backlog_sweep(client: redis.Redis, k: AccountKeys) -> None:
    parked(client, k, "r1")
    leased(client, k)
    run(client, "backlog_settle", settle_keys(k), settle_args(k, ["r1"]))
    keys = [k.oa_queue, k.known_oas, k.oas]
    assert run(client, "backlog_sweep", keys, [k.oa(OA), OA, NOW_MS - 1000, 64]) == [
        0,
        str(NOW_MS).encode(),
        0,
    ]
    assert client.sismember(k.known_oas, OA)
    assert run(client, "backlog_sweep", keys, [k.oa(OA), OA, NOW_MS + 1000, 64]) == [1, b"", 1]
    assert not client.sismember(k.known_oas, OA)  # nothing of it left: the OA forgotten
    assert client.exists(f"{k.oa(OA)}meta") == 0


def smoke_backlog_counts(client: redis.Redis, k: AccountKeys) -> None:
    parked(client, k, "r1", "r2")
    assert run(client, "backlog_counts", [], [k.oa(OA), NOW_MS]) == [
        2,
        2,
        0,
        0,
        str(NOW_MS).encode(),
    ]


def smoke_backlog_where(client: redis.Redis, k: AccountKeys) -> None:
    assert run(client, "backlog_where", [], [k.oa(OA), "r1"]) == []
    parked(client, k, "r1")
    assert run(client, "backlog_where", [], [k.oa(OA), "r1"]) == [
        b"c",
        str(NOW_MS).encode(),
        str(NOW_MS).encode(),
        b"",
    ]


def smoke_backlog_claim(client: redis.Redis, k: AccountKeys) -> None:
    parked(client, k, "r1")
    args = [k.oa(OA), NOW_MS, NOW_MS + 60_000, "push", OA, "1", 0, "", "r1", "r2"]
    answer = run(client, "backlog_claim", [k.oas, k.known_oas, k.oa_queue, k.backlog_meta], args)
    now = str(NOW_MS).encode()
    assert answer == [b"waiting", now, b"", now, b"new", now, b"", now]
    assert client.zscore(k.oa_queue, OA) == NOW_MS + 60_000  # both leased to the push
    assert client.hget(k.backlog_meta, "refs") == b"2"


def smoke_backlog_next(client: redis.Redis, k: AccountKeys) -> None:
    keys = [k.oa_queue, k.backlog_meta]
    assert run(client, "backlog_next", keys, [NOW_MS]) == [0, b"", 0]  # nothing built yet
    parked(client, k, "r1", "r2")
    run(client, "backlog_migrate", [k.oas, k.oa_queue, k.backlog_meta], [k.oa_prefix])
    assert run(client, "backlog_next", keys, [NOW_MS]) == [1, OA.encode(), 2]
    assert run(client, "backlog_next", keys, [NOW_MS - 1]) == [1, b"", 2]  # not due yet


def smoke_consumer_remember(client: redis.Redis, k: AccountKeys) -> None:
    key = f"{k.prefix}:consumer"
    assert run(client, "consumer_remember", [key], [3, "e-pending", 60]) == 1
    assert run(client, "consumer_remember", [key], [2, "e-older", 60]) == 0  # a step back
    assert run(client, "consumer_remember", [key], [3, "e-again", 60]) == 0  # not further
    assert run(client, "consumer_remember", [key], [5, "e-sent", 60]) == 1
    assert client.hget(key, "event_id") == b"e-sent" and 0 < client.ttl(key) <= 60


def smoke_backlog_migrate(client: redis.Redis, k: AccountKeys) -> None:
    keys = [k.oas, k.oa_queue, k.backlog_meta]
    parked(client, k, "r1", "r2")
    client.delete(k.oa_queue, k.backlog_meta)  # as a version before the queue left it
    assert run(client, "backlog_migrate", keys, [k.oa_prefix]) == 1
    assert client.zrange(k.oa_queue, 0, -1, withscores=True) == [(OA.encode(), NOW_MS)]
    assert client.hget(k.backlog_meta, "refs") == b"2"
    assert run(client, "backlog_migrate", keys, [k.oa_prefix]) == 0  # once


SMOKE: dict[str, Callable[[redis.Redis, AccountKeys], None]] = {
    name: globals()[f"smoke_{name}"] for name in SCRIPTS
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_script_runs_on_its_own_with_its_documented_keys(name, redis_client, account):
    SMOKE[name](redis_client, account)


# --- one GCRA ----------------------------------------------------------------------------


def test_gcra_takes_the_later_of_the_stored_time_and_now_and_lets_a_burst_run_ahead(
    redis_client,
):
    cases = [  # tat, now, step, burst -> new tat, wait
        (0, 1000, 100, 0, 1100, 0),
        (1100, 1000, 100, 0, 1200, 100),
        (1100, 1000, 100, 300, 1200, -200),
        (900, 1000, 100, 0, 1100, 0),
        (5000, 1000, 100, 300, 5100, 3700),
    ]
    driver = "\nlocal out = {}\nfor i = 1, #ARGV, 4 do\n"
    driver += "  local tat, wait = gcra(tonumber(ARGV[i]), tonumber(ARGV[i + 1]),"
    driver += " tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))\n"
    driver += "  out[#out + 1] = int_text(tat)\n  out[#out + 1] = int_text(wait)\nend\nreturn out"
    args = [value for case in cases for value in case[:4]]
    answer = redis_client.eval(script_text("gcra") + driver, 0, *args)
    assert [int(x) for x in answer] == [value for case in cases for value in case[4:]]


def test_the_limiter_reserve_and_the_inbox_rate_agree_on_a_sequence(redis_client, account):
    # given one spacing of 1 s for both: the limiter's slots, and one push source (no burst)
    step_us = 1_000_000
    spacing = [step_us, *SPACING_ARGS[1:]]
    source = account.push_source("10.0.0.2")
    inbox = [account.pushes, source, account.stats]
    # when both take four turns, interleaved (within milliseconds of each other)
    limiter_waits_us, inbox_waits_ms = [], []
    for _ in range(4):
        limiter_waits_us.append(run(redis_client, "limiter_reserve", [account.rate], [*spacing, 0]))
        status, value = run(
            redis_client, "inbox_record", inbox, [step_us, 0, 10 * step_us, 100, "{}", ""]
        )
        inbox_waits_ms.append(0 if status == 1 else value)
    # expect the same turns: now, then one spacing further each (less the time gone by)
    assert limiter_waits_us[0] == 0 and inbox_waits_ms[0] == 0
    for k in range(1, 4):
        assert k * step_us - 50_000 < limiter_waits_us[k] <= k * step_us
        assert abs(inbox_waits_ms[k] - limiter_waits_us[k] / 1000) < 20
    # and the same next free turn stored, four spacings after the first
    limiter_tat_us = int(redis_client.hget(account.rate, "tat_us") or 0)
    inbox_tat_us = int(float(redis_client.get(source) or 0))
    assert abs(limiter_tat_us - inbox_tat_us) < 20_000
    assert abs(limiter_tat_us - 4 * step_us - redis_now_us(redis_client)) < 50_000


# --- one breaker -------------------------------------------------------------------------


def test_the_breaker_fields_are_read_and_written_in_breaker_lua_only():
    touching = {
        n for n in lua_files() if re.search(r"open_until_us|probe_until_us", code(lua_source(n)))
    }
    assert touching == {"breaker"}


@pytest.fixture
def gate(redis_client, account):
    """A breaker (opens on the first failure, 10 s doubling) and a commit with a 5 s probe."""
    breaker = Breaker(redis_client, account.health, trip_after=1, base_s=10.0, max_s=60.0)
    return breaker, gate_limiter(redis_client, account)


def gate_limiter(redis_client, account) -> RateLimiter:
    """The account's commit with a 5 s probe, in a process of its own."""
    return RateLimiter(
        redis_client,
        (account.rate, account.paused, account.health),
        0.001,
        0.0,
        probe_timeout_s=5.0,
        max_backoff_s=60.0,
    )


def test_a_probe_that_never_reports_frees_the_way_after_the_probe_timeout(
    gate, redis_client, account
):
    breaker, limiter = gate
    assert breaker.record_failure().wait_s == pytest.approx(10, abs=0.01)
    assert limiter.commit().backing_off
    # when the opening has passed: one probe goes, holding the next for the probe timeout
    redis_client.hset(account.health, "open_until_us", redis_now_us(redis_client) - 1)
    probe = limiter.commit()
    assert probe.go
    probe_until_us = int(redis_client.hget(account.health, "probe_until_us") or 0)
    assert probe_until_us == probe.at_us + 5_000_000
    limiter.mark_sent(probe.at_us)
    held = limiter.commit()
    assert held.backing_off and 4.9 < held.wait_s <= 5
    # and once the probe timeout passed without a report, another probe goes
    redis_client.hset(account.health, "probe_until_us", redis_now_us(redis_client) - 1)
    redis_client.hincrby(account.rate, "last_us", -1_000_000)  # past the 1 ms spacing
    assert gate_limiter(redis_client, account).commit().go  # another process's probe


def test_a_failed_probe_opens_the_breaker_again_for_longer_and_ends_the_probe(
    gate, redis_client, account
):
    breaker, limiter = gate
    breaker.record_failure()
    redis_client.hset(account.health, "open_until_us", redis_now_us(redis_client) - 1)
    assert limiter.commit().go  # the probe
    # when it fails: open for twice as long, and no probe under way any more
    failure = breaker.record_failure()
    assert failure.in_a_row == 2 and failure.wait_s == pytest.approx(20, abs=0.01)
    assert redis_client.hget(account.health, "probe_until_us") == b"0"
    commit = limiter.commit()
    assert commit.backing_off and commit.failures == 2 and 19.9 < commit.wait_s <= 20


def test_a_probe_further_ahead_than_the_probe_timeout_is_not_waited_for(
    gate, redis_client, account
):
    # given a half-open breaker whose probe "holds" for a day (the Redis clock went back)
    _, limiter = gate
    now_us = redis_now_us(redis_client)
    redis_client.hset(
        account.health,
        mapping={
            "failures": 1,
            "open_until_us": now_us - 1,
            "probe_until_us": now_us + 86_400_000_000,
        },
    )
    # expect a new probe to go, and to hold the next for the probe timeout only
    probe = limiter.commit()
    assert probe.go
    assert int(redis_client.hget(account.health, "probe_until_us") or 0) == probe.at_us + 5_000_000


def test_a_shorter_hold_never_shortens_an_opening(gate):
    breaker, _ = gate
    assert breaker.record_failure(hold_s=30).wait_s == pytest.approx(30, abs=0.01)
    # the second failure's own wait (10 s doubled: 20 s) is shorter than what is left
    assert breaker.record_failure(hold_s=1).wait_s == pytest.approx(30, abs=0.01)
