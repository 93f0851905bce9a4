"""esms.fetch_callbacks: accept RefIds from producers and park them to be asked."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import redis
from celery.exceptions import Reject

from esms_callbacks.accounts import (
    DEFAULT_ACCOUNT,
    account_names,
    check_account_name,
    not_in_file,
)
from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.engine.notes import Note
from esms_callbacks.engine.redis_connect import connect
from esms_callbacks.engine.replicas import ReplicaFence
from esms_callbacks.errors import (
    AccountNotServed,
    AccountUnavailable,
    BrokerFull,
    ConfigError,
    InvalidSubmission,
    NoAccountNamed,
)
from esms_callbacks.esms.validation import Submission, validate_submission
from esms_callbacks.ops.log_context import for_account
from esms_callbacks.retry_policy import FETCH_TASK_RETRY
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings, read_setting
from esms_callbacks.tasks.app import app
from esms_callbacks.tasks.context import RuntimeTask
from esms_callbacks.terms import QUERY_OFF

log = logging.getLogger(__name__)
ARG_NAMES = ("ref_ids", "oa_id", "account")


# A broker message of at most about this many bytes of RefIds: a worker child killed for
# memory by a huge message would get it redelivered, to be killed again.
MAX_MESSAGE_REFID_BYTES = 1_000_000


class ValidatingTask(RuntimeTask):
    """Reject bad arguments at the producer, before anything is queued; split a large
    submission into messages of a bounded size."""

    def apply_async(self, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any) -> Any:
        try:
            queued = self._queue(args, kwargs, *rest, **options)
        except Exception as exc:
            if not out_of_memory(exc):
                raise
            raise BrokerFull(
                "the broker's Redis is out of memory (maxmemory reached): nothing was queued; "
                "submit again once there is room (see `esms-callbacks status`: an unread "
                "status queue is the usual cause)"
            ) from exc
        fence = submission_fence()
        if fence is not None:  # NotDurable: it may be lost in a failover; submitting again is safe
            fence.confirm()
        return queued

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry, except that a retry the broker refuses to queue (full, or gone)
        keeps the submission: Celery would reject it for good (Reject(requeue=False))."""
        try:
            return super().retry(*args, **kwargs)
        except Reject as exc:
            if exc.requeue:
                raise
            raise Reject(exc.reason, requeue=True) from exc

    def _queue(self, args: Any, kwargs: Any, *rest: Any, **options: Any) -> Any:
        ref_ids, oa_id, account, unknown = bind_arguments(args, kwargs)
        sms_type = unknown.pop("sms_type", None)
        submission = validate_submission(ref_ids, oa_id, unknown, sms_type)
        account = producer_checked_account(account)
        chunks = split_by_size(submission.ref_ids, MAX_MESSAGE_REFID_BYTES)
        if len(chunks) == 1:
            return super().apply_async(args, kwargs, *rest, **options)
        # Each part is a submission of its own (parking is idempotent); the first one's
        # result stands for the call, as a single message's would.
        first, *others = chunks
        named: dict[str, object] = {"oa_id": submission.oa_id, "account": account}
        if submission.sms_type is not None:
            named["sms_type"] = submission.sms_type
        result = super().apply_async((), {"ref_ids": first, **named}, **options)
        options.pop("task_id", None)
        for chunk in others:
            super().apply_async((), {"ref_ids": chunk, **named}, **options)
        return result


@cache
def submission_fence() -> ReplicaFence | None:
    """This producer's confirmation that a submission is on the broker's replicas
    (ESMS_REDIS_REPLICAS, a Redis broker), or None when none is asked for."""
    settings = Settings.from_env(process="app")
    target = settings.broker_redis_target()
    if target is None or settings.redis_replicas == 0:
        return None
    return ReplicaFence(
        connect(target), "esms:fence", settings.redis_replicas, settings.redis_replica_timeout_s
    )


def out_of_memory(exc: BaseException | None) -> bool:
    """Whether `exc` is, or was caused by, Redis refusing a write for want of memory (kombu
    may wrap it as a connection error)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, redis.exceptions.OutOfMemoryError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def split_by_size(ref_ids: list[str], max_bytes: int) -> list[list[str]]:
    """Cut `ref_ids` into lists whose JSON takes at most about `max_bytes` each."""
    chunks: list[list[str]] = [[]]
    size = 0
    for ref_id in ref_ids:
        cost = len(ref_id) + 4  # quotes, comma, space
        if chunks[-1] and size + cost > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(ref_id)
        size += cost
    return chunks


def bind_arguments(args: Any, kwargs: Any) -> tuple[object, object, str, dict[str, object]]:
    """Map positional and keyword arguments onto (ref_ids, oa_id, account, unknown);
    InvalidSubmission for an account that is not a name."""
    args = list(args or ())
    kwargs = dict(kwargs or {})
    if len(args) > len(ARG_NAMES):
        raise InvalidSubmission(
            "fetch_callbacks takes at most 3 positional arguments (ref_ids, oa_id, account), "
            f"{len(args)} given"
        )
    for name, value in zip(ARG_NAMES, args, strict=False):
        if name in kwargs:
            raise InvalidSubmission(f"{name} given both by position and by name")
        kwargs[name] = value
    ref_ids, oa_id = kwargs.pop("ref_ids", None), kwargs.pop("oa_id", None)
    account = check_account_name(kwargs.pop("account", DEFAULT_ACCOUNT))
    return ref_ids, oa_id, account, kwargs


def producer_checked_account(account: str) -> str:
    """`account`, refused here (AccountNotServed) when this producer reads the accounts file
    and it has no such table; otherwise the worker checks it."""
    path: str = read_setting("accounts_file")
    if not path:
        return account
    try:
        names = account_names(path)
    except ConfigError:
        return account  # unreadable here: the worker, which must read it, decides
    if account not in names:
        raise AccountNotServed(not_in_file(account, path, names))
    return account


# Redis unreachable, or no account named: retried until fixed (retry_policy). A refusal (bad
# input) is expected (`throws`): logged here, in one line, and shown failed in Flower; Celery
# neither logs it again with a traceback nor retries it.
@app.task(
    name="esms.fetch_callbacks",
    base=ValidatingTask,
    bind=True,
    acks_late=True,
    throws=(InvalidSubmission,),
    **FETCH_TASK_RETRY,
)
def fetch_callbacks(
    self: ValidatingTask,
    ref_ids: object = None,
    oa_id: object = None,
    account: object = DEFAULT_ACCOUNT,
    sms_type: object = None,
    **unknown: object,
) -> dict[str, object]:
    """Park RefIds of one OA of one account to be asked from eSMS; each will end in one
    terminal event. `sms_type` (24 or 25, optional): the messages' type, which
    QueryZnsStatus needs (found by asking when not given)."""
    try:
        submission = validate_submission(ref_ids, oa_id, unknown, sms_type)
        runtime = self.runtimes.get(check_account_name(account))
    except InvalidSubmission as exc:  # AccountNotServed too: never retried, other work goes on
        log.error("rejected a submission: %s", exc)
        raise
    except AccountUnavailable as exc:  # in the file, not readable here yet: retried
        log.error("submission kept for a retry: %s", exc)
        raise
    with for_account(runtime.name):
        return park_submission(runtime, submission)


def park_submission(runtime: Runtime, submission: Submission) -> dict[str, object]:
    if not runtime.account.known:
        # Retried (autoretry_for) and kept in the broker until the worker has credentials.
        problem = NoAccountNamed(
            f"cannot accept RefIds for OA {submission.oa_id}: no eSMS account is named "
            "(set ESMS_API_KEY and ESMS_SECRET_KEY, or ESMS_ACCOUNT, for the workers); the "
            "submission stays queued and is retried"
        )
        log.error("%s", problem)
        raise problem
    now_s = runtime.clock.now_s()
    try:
        parked = runtime.backlog.park(submission.oa_id, submission.ref_ids, now_s)
    except redis.exceptions.OutOfMemoryError:
        log.error(
            "Redis is full (maxmemory reached, noeviction): could not park %d RefIds for OA "
            "%s; the submission stays in the broker and is taken again once there is room. "
            "Free memory (an unread status queue: see `esms-callbacks status`) or raise "
            "maxmemory",
            len(submission.ref_ids),
            submission.oa_id,
        )
        raise  # retried (autoretry_for RedisError); never dropped
    if submission.sms_type is not None and runtime.terms.query_status != QUERY_OFF:
        note = Note(sms_type=submission.sms_type)
        runtime.notes.write(submission.oa_id, dict.fromkeys(submission.ref_ids, note))

    runtime.state_fence.confirm()  # NotDurable: retried, the task is not acknowledged
    log.info(
        "accepted %d RefIds for OA %s (%d new, %d already waiting, %d already finished)",
        len(submission.ref_ids),
        submission.oa_id,
        parked.added,
        parked.already_waiting,
        parked.already_finished,
    )
    if runtime.terms.drain_window.is_open(as_datetime(now_s)):
        runtime.dispatch.request(now_s)
    else:
        runtime.dispatch.check_capacity(now_s)
    return {
        "account": runtime.name,
        "oa_id": submission.oa_id,
        "accepted": len(submission.ref_ids),
        "new": parked.added,
        "already_waiting": parked.already_waiting,
        "already_finished": parked.already_finished,
        "duplicates_in_call": submission.duplicates,
    }
