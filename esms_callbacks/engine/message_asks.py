"""Ask QueryZnsStatus and GetZaloMessageStatus about leased RefIds, one message a request,
each endpoint at its own rate (engine.paced), and say what each answer means for each RefId.

The answers become `Observed` outcomes for the settle step, with their source (`query`,
`delivery`); what they teach (a SmsType, Zalo's message id) becomes notes (engine.notes); a
RefId whose request failed or never left is handed back to wait, as its endpoint's retry
policy says. A failing endpoint opens its own breaker, never GetCallback's.

QueryZnsStatus needs the message's SmsType: the producer's, a GetCallback record's, or, when
none is known, Zalo normal (25) first and priority (24) if eSMS has no data for that one;
eSMS having no data for either is `not_found`, as GetCallback leaving it out is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from esms_callbacks.engine.backlog import Leased
from esms_callbacks.engine.clock import Clock, as_datetime
from esms_callbacks.engine.health import AccountPause, Breaker
from esms_callbacks.engine.limiter import RateLimiter
from esms_callbacks.engine.notes import Note
from esms_callbacks.engine.paced import Answered, PacedSender, Send
from esms_callbacks.engine.settle_step import Observed
from esms_callbacks.errors import EsmsError, NotSent
from esms_callbacks.esms.records import NOT_FOUND_OUTCOME, SENT, Outcome
from esms_callbacks.events.publish import SOURCE_DELIVERY, SOURCE_QUERY
from esms_callbacks.retry_policy import PAUSE, RETRY, decide
from esms_callbacks.settings import Settings
from esms_callbacks.terms import DELIVERY, QUERY, EndpointTerms, Terms

if TYPE_CHECKING:
    from esms_callbacks.esms.delivery import DeliveryStatus
    from esms_callbacks.esms.query import ZnsStatus

log = logging.getLogger(__name__)

NORMAL, PRIORITY = 25, 24  # SmsType: Zalo normal, Zalo priority
AskQuery = Callable[[str, int], "Send[ZnsStatus | None]"]
AskDelivery = Callable[[str, str], "Send[DeliveryStatus]"]


@dataclass
class Endpoint:
    """One endpoint's terms, limiter, breaker and sender, as an account has them."""

    terms: EndpointTerms
    limiter: RateLimiter
    breaker: Breaker
    sender: PacedSender


@dataclass
class MessageAnswers:
    observed: list[Observed] = field(default_factory=list)
    notes: dict[str, Note] = field(default_factory=dict)  # what the answers taught
    back: dict[str, float] = field(default_factory=dict)  # RefId -> due again (epoch s)
    counters: dict[str, int] = field(default_factory=dict)  # for the account's stats
    stopped: str = ""  # why the account cannot go on now (paused), if so


@dataclass
class MessageAsks:
    settings: Settings
    terms: Terms
    query: Endpoint
    delivery: Endpoint
    pause: AccountPause
    ask_query: AskQuery
    ask_delivery: AskDelivery
    clock: Clock

    def __post_init__(self) -> None:
        self._now = self.clock.now_s

    def ask(
        self,
        oa_id: str,
        by_query: Sequence[Leased],
        by_delivery: Sequence[Leased],
        notes: Mapping[str, Note],
        clock: Clock | None = None,
    ) -> MessageAnswers:
        """Ask each RefId of `by_query` and `by_delivery` at its endpoint; `clock`: the
        caller's, which dates what is observed (the senders sleep on their own)."""
        self._now = (clock or self.clock).now_s
        out = MessageAnswers()
        self._ask_queries(by_query, notes, out)
        self._ask_deliveries(oa_id, by_delivery, notes, out)
        return out

    def _ask_queries(
        self, items: Sequence[Leased], notes: Mapping[str, Note], out: MessageAnswers
    ) -> None:
        if not items:
            return
        guessed = {item.ref_id for item in items if not _type_of(notes, item.ref_id)}
        types = {item.ref_id: _type_of(notes, item.ref_id) or NORMAL for item in items}
        answers = self._send(self.query, items, lambda ref: self.ask_query(ref, types[ref]), out)
        # eSMS has no data under the type guessed: the other type, once
        again = [
            item
            for item in items
            if item.ref_id in guessed
            and item.ref_id in answers
            and answers[item.ref_id].error is None
            and answers[item.ref_id].value is None
        ]
        if again and not out.stopped:
            types.update({item.ref_id: PRIORITY for item in again})
            answers.update(
                self._send(self.query, again, lambda ref: self.ask_query(ref, types[ref]), out)
            )
        from esms_callbacks.esms.query import outcome_of_query

        now_s = self._now()
        for item in items:
            answer = answers.get(item.ref_id)
            if answer is None or answer.error is not None:
                continue
            status = answer.value
            if status is None:  # eSMS has no data for it under either type (yet): both are
                # asked again, GetCallback first (a message may be young, not unknown to it)
                out.observed.append(self._observed(item, NOT_FOUND_OUTCOME, now_s, SOURCE_QUERY))
                out.notes[item.ref_id] = Note(heard=(_heard("q", NOT_FOUND_OUTCOME, now_s),))
                continue
            outcome = outcome_of_query(status)
            out.observed.append(self._observed(item, outcome, now_s, SOURCE_QUERY))
            out.notes[item.ref_id] = Note(
                types[item.ref_id],
                True,
                status.zalo_msg_id or "",
                (_heard("q", outcome, now_s),),
            )

    def _ask_deliveries(
        self,
        oa_id: str,
        items: Sequence[Leased],
        notes: Mapping[str, Note],
        out: MessageAnswers,
    ) -> None:
        if not items:
            return
        ids = {item.ref_id: (notes.get(item.ref_id) or Note()).message_id for item in items}
        answers = self._send(
            self.delivery, items, lambda ref: self.ask_delivery(oa_id, ids[ref]), out
        )
        from esms_callbacks.esms.delivery import delivery_moment

        now_s = self._now()
        for item in items:
            answer = answers.get(item.ref_id)
            if answer is None or answer.error is not None or answer.value is None:
                continue
            moment = delivery_moment(answer.value)
            outcome = delivered(answer.value.record, moment) if moment else STILL_SENT
            out.observed.append(self._observed(item, outcome, now_s, SOURCE_DELIVERY))
            out.notes[item.ref_id] = Note(heard=(_heard("d", outcome, now_s),))

    def _send(
        self,
        endpoint: Endpoint,
        items: Sequence[Leased],
        send_for: Callable[[str], Send[Any]],
        out: MessageAnswers,
    ) -> dict[str, Answered[Any]]:
        """Send one request per RefId at the endpoint's pace; hand back those whose request
        failed or never left, as the retry policy says; return the answers."""
        name = endpoint.terms.endpoint
        now_s = self._now()
        window = endpoint.terms.window
        if not window.always and not window.is_open(as_datetime(now_s)):
            opens_s = window.next_open(as_datetime(now_s)).timestamp()
            out.back.update({item.ref_id: opens_s for item in items})
            return {}
        if out.stopped:
            out.back.update({item.ref_id: now_s for item in items})
            return {}
        bounds = window.bounds_at(as_datetime(now_s)) if not window.always else None
        window_s = (bounds[0].timestamp(), bounds[1].timestamp()) if bounds else None
        answers = endpoint.sender.send_all(
            [(item.ref_id, send_for(item.ref_id)) for item in items], window_s
        )
        sent = answered = 0
        held_back_until_s: float | None = None
        for ref_id, answer in answers.items():
            if isinstance(answer.error, NotSent):  # its slot never came: the breaker is open,
                # the account paused or the window closing; not again at the very next step
                if held_back_until_s is None:
                    held_back_until_s = self._held_back_until_s(endpoint)
                out.back[ref_id] = held_back_until_s
                continue
            sent += 1
            if answer.error is None:
                answered += 1
                continue
            out.back[ref_id] = self._failed(endpoint, answer.error, out)
        _count(out.counters, f"endpoint_requests:{name}", sent)
        if answered:
            endpoint.breaker.record_success()
        return answers

    def _held_back_until_s(self, endpoint: Endpoint) -> float:
        """When RefIds whose request the endpoint's gate held back are due again: once its
        breaker lets a probe through, at least ESMS_RETRY_BASE from now."""
        now_s = self._now()
        open_until_s = endpoint.breaker.state()["open_until_s"]
        return max(now_s + self.settings.retry_base_s, open_until_s)

    def _failed(self, endpoint: Endpoint, exc: Exception, out: MessageAnswers) -> float:
        """When a RefId whose request failed is asked again (the endpoint's breaker, margin
        and the account's pause as the retry policy says)."""
        name = endpoint.terms.endpoint
        now_s = self._now()
        if not isinstance(exc, EsmsError):
            log.error("%s request failed unexpectedly: %r", name, exc)
            _count(out.counters, f"endpoint_errors:{name}:unexpected", 1)
            return now_s + self.settings.retry_base_s
        _count(out.counters, f"endpoint_errors:{name}:{exc.code or type(exc).__name__}", 1)
        decision = decide(exc, self.settings, self.terms, near_window_edge=False)
        if decision.kind == RETRY:
            if decision.widen_margin:
                extra_s = endpoint.limiter.widen_margin()
                log.warning("eSMS answered 160 to %s; margin widened to +%.1f ms", name, extra_s)
            failure = endpoint.breaker.record_failure(endpoint.terms.rate_interval_s)
            return now_s + max(self.settings.retry_base_s, failure.wait_s)
        if decision.kind == PAUSE:
            self.pause.pause(str(exc), decision.pause_s)
            out.stopped = decision.stop
            log.error("eSMS refused the account on %s (%s); pausing requests", name, exc)
            return now_s + decision.pause_s
        log.error("eSMS rejected a %s request (%s)", name, exc)
        return now_s + decision.requeue_after_s

    def _observed(self, item: Leased, outcome: Outcome, now_s: float, source: str) -> Observed:
        return Observed(
            item.ref_id, outcome, now_s, item.state_key, item.submitted_s, source=source
        )


# GetZaloMessageStatus: not on the phone yet (0), or no such message (-1): still sent.
STILL_SENT = Outcome(SENT, 5, None, None)


def delivered(record: dict[str, Any] | None, moment: datetime) -> Outcome:
    from esms_callbacks.esms.records import DELIVERED

    return Outcome(DELIVERED, 5, None, record, delivered_at=moment)


def _heard(letter: str, outcome: Outcome, now_s: float) -> tuple[str, str, int]:
    return (letter, outcome.state_key, int(now_s))


def _type_of(notes: Mapping[str, Note], ref_id: str) -> int | None:
    note = notes.get(ref_id)
    return note.sms_type if note else None


def _count(counters: dict[str, int], name: str, n: int) -> None:
    if n:
        counters[name] = counters.get(name, 0) + n


__all__ = ["DELIVERY", "QUERY", "MessageAnswers", "MessageAsks"]
