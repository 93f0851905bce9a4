"""A simulator running elsewhere (its own process: bench/harness.py's simulator_process), scripted
over its /_sim control API.

Tests and benchmarks that measure timing use one rather than a simulator thread, so the
receipt times it logs are not skewed by the measuring process's own work.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

# The simulator is local: never reach it through a proxy named in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RemoteSimulator:
    """Control a simulator over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def requests(self, *, since: int = 0, account: str | None = None) -> list[dict[str, Any]]:
        """The request log from entry `since` on, each naming its "account" ("" when its keys
        matched none); only `account`'s if given."""
        query: dict[str, str | int] = {"since": since} if since else {}
        if account is not None:
            query["account"] = account
        path = "/_sim/requests" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        result: list[dict[str, Any]] = self._call("GET", path)
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sim/stats")
        return result

    def account_stats(self) -> dict[str, dict[str, Any]]:
        """Per account, by name (every account, in order): rate_interval_s, max_refs,
        requests, refs_sent, refs_answered, records_returned, first_at_s and last_at_s
        (time.time(), None without requests), min_gap_s, code_160 and codes."""
        result: dict[str, dict[str, Any]] = self._call("GET", "/_sim/accounts")
        return result

    def endpoint_stats(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per account, by name: QueryZnsStatus's ("query"), GetZaloMessageStatus's
        ("delivery") and GetSmsSentData_V2's ("ledger") rate_interval_s, requests, min_gap_s,
        code_160 and codes."""
        result: dict[str, dict[str, dict[str, Any]]] = self._call("GET", "/_sim/endpoints")
        return result

    def register_messages(self, ref_ids: list[str], oa_id: str, **spec: Any) -> int:
        """Register messages sent now: `spec` is callback_url, type_id, final_after_s, final,
        delivered_after_s (simulator.messages). Return how many."""
        body = {"ref_ids": ref_ids, "oa_id": oa_id, **spec}
        registered: int = self._call("POST", "/_sim/messages", body)["registered"]
        return registered

    def register_many(self, count: int, oa_id: str, ref_id_prefix: str = "", **spec: Any) -> int:
        """Register `count` messages sent now, named `ref_id_prefix` and 0 to count - 1, in one
        small request (a benchmark's 100,000 rows of the ledger); `spec` as for
        register_messages. Return how many."""
        body = {"count": count, "ref_id_prefix": ref_id_prefix, "oa_id": oa_id, **spec}
        registered: int = self._call("POST", "/_sim/messages", body, timeout_s=120)["registered"]
        return registered

    def asked(self, ref_id: str) -> int:
        """How many times `ref_id` was asked (faulted requests that answered nothing excluded)."""
        query = urllib.parse.urlencode({"ref_id": ref_id})
        result: int = self._call("GET", f"/_sim/asked?{query}")["asked"]
        return result

    def reset(self) -> None:
        self._call("POST", "/_sim/reset", {})

    def configure(self, **config: Any) -> None:
        """Change rate_interval_s, query_rate_interval_s, delivery_rate_interval_s,
        ledger_rate_interval_s, max_refs (of `account=NAME`, else the default account),
        window, timezone."""
        self._call("POST", "/_sim/config", config)

    def set_policy(self, policy: str) -> None:
        self._call("POST", "/_sim/policy", {"policy": policy})

    def add_fault(self, kind: str, count: int = 1, **params: Any) -> None:
        self._call("POST", "/_sim/fault", {"kind": kind, "count": count, **params})

    def set_fault_rate(self, kind: str, rate: float, **params: Any) -> dict[str, float]:
        """Make a random share `rate` of requests fail as `kind` (0 turns it off); `params`
        are the kind's own (`code=160`, `delay_s=2`) and `seed`. Return the rates now on."""
        body = {"kind": kind, "rate": rate, **params}
        rates: dict[str, float] = self._call("POST", "/_sim/fault_rate", body)["fault_rates"]
        return rates

    def script(self, ref_ids: list[str], outcomes: list[str]) -> None:
        self._call("POST", "/_sim/script", {"ref_ids": ref_ids, "outcomes": outcomes})

    def push(
        self,
        url: str,
        oa_id: str,
        ref_ids: list[str],
        *,
        delay_s: float = 0.0,
        rate_per_s: float = 0.0,
        statuses: str = "final",
    ) -> int:
        """Make the simulator push the RefIds' statuses to `url` as eSMS would (statuses
        "final" or "all"); return how many pushes were queued."""
        body = {
            "url": url,
            "oa_id": oa_id,
            "ref_ids": ref_ids,
            "delay_s": delay_s,
            "rate_per_s": rate_per_s,
            "statuses": statuses,
        }
        queued: int = self._call("POST", "/_sim/push", body)["queued"]
        return queued

    def configure_push(self, **settings: Any) -> dict[str, Any]:
        """Change push delivery (timeout_s, retries, retry_delay_s); return the settings."""
        result: dict[str, Any] = self._call("POST", "/_sim/push_config", settings)
        return result

    def pushes(self) -> dict[str, Any]:
        """The push counts: queued, attempts, delivered, retried, given_up, in_flight,
        waiting and answers by HTTP status ("error" for none)."""
        result: dict[str, Any] = self._call("GET", "/_sim/pushes")
        return result

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout_s: float = 10.0,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 400:
                raise
            # The control API explains what it refused; say it as callers expect bad input.
            raise ValueError(json.loads(exc.read()).get("error", "refused")) from None
