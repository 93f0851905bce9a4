"""The /_sim control API: script, fault and inspect a simulator over HTTP (see simulator.app)."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from yarl import URL

from esms_callbacks.simulator.outcomes import parse_outcomes, parse_policy
from esms_callbacks.simulator.push import STATUSES, is_statuses, pushes_of
from esms_callbacks.simulator.pusher import PUSHER_KEY
from esms_callbacks.simulator.state import SIM_KEY, Simulator
from esms_callbacks.simulator.window_check import window_check

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def control_routes() -> list[web.RouteDef]:
    return [
        web.post("/_sim/script", _guarded(_script)),
        web.post("/_sim/policy", _guarded(_policy)),
        web.post("/_sim/messages", _guarded(_messages)),
        web.post("/_sim/fault", _guarded(_fault)),
        web.post("/_sim/poison", _guarded(_poison)),
        web.post("/_sim/fault_rate", _guarded(_fault_rate)),
        web.post("/_sim/reset", _guarded(_reset)),
        web.post("/_sim/config", _guarded(_set_config)),
        web.get("/_sim/config", _guarded(_get_config)),
        web.get("/_sim/requests", _guarded(_requests)),
        web.get("/_sim/stats", _guarded(_stats)),
        web.get("/_sim/accounts", _guarded(_accounts)),
        web.get("/_sim/endpoints", _guarded(_endpoints)),
        web.get("/_sim/asked", _guarded(_asked)),
        web.post("/_sim/push", _guarded(_push)),
        web.post("/_sim/push_config", _guarded(_set_push_config)),
        web.get("/_sim/push_config", _guarded(_get_push_config)),
        web.get("/_sim/pushes", _guarded(_pushes)),
    ]


def _guarded(handler: Handler) -> Handler:
    """Turn a ValueError from bad control input into 400 {"error": ...}."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)

    return guarded


async def _body(request: web.Request) -> dict[str, object]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"control body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("control body must be a JSON object")
    return body


def _ok(**extra: object) -> web.Response:
    return web.json_response({"ok": True, **extra})


async def _script(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    ref_ids = body.get("ref_ids", [body.get("ref_id")])
    if not isinstance(ref_ids, list) or not all(isinstance(r, str) and r for r in ref_ids):
        raise ValueError('give "ref_id" (a string) or "ref_ids" (a list of strings)')
    outcomes = parse_outcomes(body.get("outcomes"))
    sim = request.app[SIM_KEY]
    for ref_id in ref_ids:
        sim.script(ref_id, outcomes)
    return _ok(scripted=len(ref_ids))


async def _policy(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    request.app[SIM_KEY].set_policy(parse_policy(body.get("policy")))
    return _ok()


async def _messages(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    return _ok(registered=request.app[SIM_KEY].register_messages(body))


async def _fault(request: web.Request) -> web.StreamResponse:
    params = await _body(request)
    kind = params.pop("kind", None)
    count = params.pop("count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError('"count" must be an integer >= 1')
    sim = request.app[SIM_KEY]
    sim.add_fault(str(kind), count, **params)
    return _ok(pending_faults=sim.pending_faults())


async def _poison(request: web.Request) -> web.StreamResponse:
    params = await _body(request)
    ref_id, kind = params.pop("ref_id", None), params.pop("kind", None)
    if not isinstance(ref_id, str) or not ref_id:
        raise ValueError('give "ref_id", the RefId every request carrying it fails for')
    request.app[SIM_KEY].poison(ref_id, str(kind), **params)
    return _ok()


async def _fault_rate(request: web.Request) -> web.StreamResponse:
    params = await _body(request)
    kind, rate, seed = params.pop("kind", None), params.pop("rate", None), params.pop("seed", None)
    if not isinstance(kind, str):
        raise ValueError('give "kind", a fault kind such as "http500"')
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise ValueError('give "rate", a number from 0 to 1 (0 turns the fault off)')
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError('"seed" must be an integer')
    sim = request.app[SIM_KEY]
    sim.set_fault_rate(kind, rate, seed, **params)
    return _ok(fault_rates=sim.fault_rates())


async def _reset(request: web.Request) -> web.StreamResponse:
    request.app[SIM_KEY].reset()
    request.app[PUSHER_KEY].reset()
    return _ok()


_INTERVAL_KEYS = (
    "rate_interval_s",
    "query_rate_interval_s",
    "delivery_rate_interval_s",
    "ledger_rate_interval_s",
)
_CONFIG_KEYS = frozenset({*_INTERVAL_KEYS, "max_refs", "window", "timezone", "account"})


async def _set_config(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    unknown = set(body) - _CONFIG_KEYS
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(unknown)}")
    sim = request.app[SIM_KEY]
    max_refs = body.get("max_refs")
    account = body.get("account")
    if account is not None and not isinstance(account, str):
        raise ValueError('"account" must be the name of an account')
    sim.account(account)  # an unknown account changes nothing, the window included
    intervals: dict[str, float] = {}
    for key in _INTERVAL_KEYS:
        value = body.get(key)
        if value is not None and not isinstance(value, int | float):
            raise ValueError(f'"{key}" must be a number of seconds')
        if value is not None:
            intervals[key] = value
    if max_refs is not None and not isinstance(max_refs, int):
        raise ValueError('"max_refs" must be an integer')
    if "window" in body:
        window, zone = body["window"], body.get("timezone", "Asia/Ho_Chi_Minh")
        if not isinstance(window, str) or not isinstance(zone, str):
            raise ValueError('"window" and "timezone" must be strings')
        is_open = window_check(window, zone)
    else:
        is_open = sim.is_open
    sim.configure(max_refs=max_refs, account=account, **intervals)
    sim.is_open = is_open
    return web.json_response(_config(sim, account))


async def _get_config(request: web.Request) -> web.StreamResponse:
    return web.json_response(_config(request.app[SIM_KEY], request.query.get("account")))


def _config(sim: Simulator, account_name: str | None = None) -> dict[str, object]:
    account = sim.account(account_name)
    return {
        "account": account.name,
        "accounts": len(sim.accounts),
        "rate_interval_s": account.rate_interval_s,
        "max_refs": account.max_refs,
        "query_rate_interval_s": account.query_rate_interval_s,
        "delivery_rate_interval_s": account.delivery_rate_interval_s,
        "ledger_rate_interval_s": account.ledger_rate_interval_s,
        "policy": sim.policy,
        "window_checked": sim.is_open is not None,
        "window_open_now": sim.is_open is None or sim.is_open(),
        "pending_faults": sim.pending_faults(),
        "fault_rates": sim.fault_rates(),
    }


async def _requests(request: web.Request) -> web.StreamResponse:
    since = request.query.get("since", "0")
    if not since.isdigit():
        raise ValueError('"since" must be a non-negative integer')
    log = list(request.app[SIM_KEY].requests)[int(since) :]
    account = request.query.get("account")
    if account is not None:
        log = [entry for entry in log if entry.account == account]
    return web.json_response([entry.to_json() for entry in log])


async def _stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIM_KEY].stats())


async def _accounts(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIM_KEY].account_stats())


async def _endpoints(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIM_KEY].endpoint_stats())


async def _asked(request: web.Request) -> web.StreamResponse:
    ref_id = request.query.get("ref_id")
    if not ref_id:
        raise ValueError('give "ref_id" as a query parameter')
    return web.json_response({"ref_id": ref_id, "asked": request.app[SIM_KEY].asked(ref_id)})


_PUSH_KEYS = frozenset({"url", "oa_id", "ref_ids", "delay_s", "rate_per_s", "statuses"})


async def _push(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    unknown = set(body) - _PUSH_KEYS
    if unknown:
        raise ValueError(f"unknown push key(s) {sorted(unknown)}; use {sorted(_PUSH_KEYS)}")
    url = _push_url(body.get("url"))
    oa_id, ref_ids = body.get("oa_id"), body.get("ref_ids")
    if not isinstance(oa_id, str) or not oa_id:
        raise ValueError('give "oa_id", the Zalo OA id as a non-empty string')
    if not isinstance(ref_ids, list) or not ref_ids:
        raise ValueError('give "ref_ids", a non-empty list of RefId strings')
    if not all(isinstance(ref_id, str) and ref_id for ref_id in ref_ids):
        raise ValueError('"ref_ids" must hold only non-empty strings')
    delay_s, rate_per_s = _at_least_zero(body, "delay_s"), _at_least_zero(body, "rate_per_s")
    statuses = body.get("statuses", "final")
    if not is_statuses(statuses):
        raise ValueError(f'"statuses" must be one of {sorted(STATUSES)}, not {statuses!r}')
    scripts = request.app[SIM_KEY].scripts_of(ref_ids)
    params = [
        one
        for ref_id, script in zip(ref_ids, scripts, strict=True)
        for one in pushes_of(ref_id, oa_id, script, statuses)
    ]
    queued = request.app[PUSHER_KEY].queue(url, params, delay_s=delay_s, rate_per_s=rate_per_s)
    return _ok(queued=queued)


def _push_url(value: object) -> URL:
    problem = '"url" must be an absolute http:// or https:// URL'
    if not isinstance(value, str):
        raise ValueError(f"{problem}, not {value!r}")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ValueError(f"{problem}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{problem}, not {value!r}")
    return url


def _at_least_zero(body: dict[str, object], name: str) -> float:
    value = body.get(name, 0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f'"{name}" must be a number >= 0, not {value!r}')
    return float(value)


async def _set_push_config(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    pusher = request.app[PUSHER_KEY]
    pusher.settings = pusher.settings.changed(**body)
    return web.json_response(pusher.settings.to_json())


async def _get_push_config(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[PUSHER_KEY].settings.to_json())


async def _pushes(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[PUSHER_KEY].counts())
