"""Which eSMS endpoint asks each leased RefId (ESMS_QUERY_STATUS, ESMS_TRACK_DELIVERY).

- GetCallback (`callback`), 200 RefIds a request, knows only messages sent with a
  CallbackUrl; with `fallback` a RefId it leaves out is asked with QueryZnsStatus in the same
  step, and from then on (its note says so);
- QueryZnsStatus (`query`), one message a request, knows every message; with `only` it asks
  every RefId, and GetCallback none;
- GetZaloMessageStatus (`delivery`), one message a request, says whether a sent message
  reached the phone: with delivery tracked, a `sent` RefId whose Zalo message id is known
  is asked there (one whose id is not yet known is asked with QueryZnsStatus, which gives
  it, unless that is off: then GetCallback, whose record carries it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from esms_callbacks.engine.backlog import Leased
from esms_callbacks.engine.notes import NO_OA, Note
from esms_callbacks.esms.records import SENT
from esms_callbacks.terms import CALLBACK, DELIVERY, QUERY, QUERY_OFF, QUERY_ONLY, Terms


@dataclass
class Routed:
    callback: list[Leased] = field(default_factory=list)
    query: list[Leased] = field(default_factory=list)
    delivery: list[Leased] = field(default_factory=list)

    def of(self, endpoint: str) -> list[Leased]:
        return {CALLBACK: self.callback, QUERY: self.query, DELIVERY: self.delivery}[endpoint]


def lead_endpoint(terms: Terms) -> str:
    """The endpoint whose slot a drain step waits for before it leases: GetCallback's, or
    QueryZnsStatus's for an account that asks only it."""
    return QUERY if terms.query_status == QUERY_ONLY else CALLBACK


def endpoint_for(item: Leased, note: Note | None, terms: Terms, oa_id: str = "") -> str:
    """The endpoint that asks `item` now (the module's docstring). A RefId adopted from
    eSMS's ledger without an OA (NO_OA) is asked with QueryZnsStatus, the one endpoint that
    needs none."""
    if oa_id == NO_OA:
        return QUERY
    note = note or Note()
    if terms.track_delivery and item.state_key.partition(":")[0] == SENT:
        if note.message_id:
            return DELIVERY
        return CALLBACK if terms.query_status == QUERY_OFF else QUERY
    if terms.query_status == QUERY_ONLY:
        return QUERY
    if terms.query_status != QUERY_OFF and note.by_query:
        return QUERY
    return CALLBACK


def route(
    batch: Sequence[Leased], notes: Mapping[str, Note], terms: Terms, oa_id: str = ""
) -> Routed:
    routed = Routed()
    for item in batch:
        routed.of(endpoint_for(item, notes.get(item.ref_id), terms, oa_id)).append(item)
    return routed
