"""Every error the project raises, and whether it is worth retrying.

    EsmsCallbacksError          the root: `except EsmsCallbacksError` catches all of these
    ├── EsmsError               something went wrong talking to eSMS
    │   ├── TransientError      ask again soon; the breaker (engine.health) decides whether
    │   │   │                   the whole account backs off
    │   │   ├── TransportError  timeout, refused or reset connection
    │   │   ├── ServerError     HTTP status other than 200 (5xx, 429, proxies)
    │   │   ├── MalformedResponse  body is not JSON or not eSMS's shape
    │   │   ├── RateLimited     Code 160: eSMS saw requests too close together (also widens
    │   │   │                   the rate margin)
    │   │   ├── NotReady        Code 105: SMSIDs not known yet; the drainer treats it as an
    │   │   │                   answer (each RefId not_found, asked again later), not a failure
    │   │   └── UnexpectedCode  a Code eSMS does not document; kept as given
    │   ├── AccountError        retrying will not help until an operator acts
    │   │   ├── AuthError       Code 101, 140, 143: credentials, IP whitelist, locked account
    │   │   └── BalanceError    Code 103: not enough balance
    │   └── RequestRejected     Code 99, 110, 204, 799, 851, 854: bad input or no data
    ├── NotSent                 the request was held back at the last moment (window closed)
    ├── BadInput (ValueError)   what came from outside cannot be used; the message says why
    │   ├── InvalidSubmission   bad task arguments; raised at the producer and in the worker
    │   │   └── AccountNotServed  a submission names an account this deployment does not
    │   │                       have (not in ESMS_ACCOUNTS_FILE): refused, never retried
    │   ├── MalformedPush       a push that cannot be a status from eSMS (answered 400)
    │   └── UnsupportedEvent    a status event this version cannot read (a consumer's error)
    ├── ConfigError (ValueError)  a setting that cannot be used; names the variable or key
    │   ├── NoAccountNamed      nothing names the account's Redis keys (no ESMS_API_KEY, no
    │   │                       ESMS_ACCOUNT): RefIds cannot be filed; retried
    │   ├── AccountUnavailable  the accounts file names the account, but its table cannot be
    │   │                       read here now (a secret's variable unset on this host, a
    │   │                       half-written file): retried, never refused
    │   └── MissingExtra        a command needs the `worker` extra, which is not installed
    ├── PublishFailed           the broker stopped taking status events part way
    │   ├── NoQueueBound        the default queue is off and no queue would receive them
    │   └── PushApplyFailed     applying pushes stopped at a failed publish; retried
    ├── BrokerFull (RuntimeError)  the broker's Redis is out of memory: not queued
    ├── NotDurable              too few replicas confirmed a write in time: it may vanish in
    │                           a failover, so it counts as not done (retried, never acked)
    └── Retry                   a transient failure (eSMS or broker): the RefIds are back to
                                wait, the drain task retries after `after_s`

What each failure leads to (retried or not, how long to wait, when to give up, the Celery
tasks' own retry options) is decided in one place: retry_policy. What each eSMS
Code raises is esms.codes'.

Messages never contain credentials: the client never puts the request body in an error.
"""

from __future__ import annotations


class EsmsCallbacksError(Exception):
    """The root of every error this project raises."""


class EsmsError(EsmsCallbacksError):
    """An eSMS request failed; `code` and `esms_message` are eSMS's own when it answered."""

    def __init__(self, message: str, *, code: int | None = None, esms_message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.esms_message = esms_message


class TransientError(EsmsError):
    """Worth retrying later with backoff."""


class TransportError(TransientError):
    pass


class ServerError(TransientError):
    pass


class MalformedResponse(TransientError):
    pass


class RateLimited(TransientError):
    pass


class NotReady(TransientError):
    pass


class UnexpectedCode(TransientError):
    pass


class AccountError(EsmsError):
    """The account cannot be served until an operator fixes it; pause, keep the RefIds."""


class AuthError(AccountError):
    pass


class BalanceError(AccountError):
    pass


class RequestRejected(EsmsError):
    """eSMS refused this request's input; asking again at once would get the same answer."""


class NotSent(EsmsCallbacksError):
    """The request was not sent: the gate before it said no (the window closed)."""


class PublishFailed(EsmsCallbacksError):
    """The broker stopped taking events after the first `published` of them."""

    def __init__(self, published: int, total: int, reason: str = "the broker failed") -> None:
        super().__init__(f"published {published} of {total} status events, then {reason}")
        self.published = published


class NoQueueBound(PublishFailed):
    """The default queue is off and no queue would receive the events."""

    def __init__(self, message: str) -> None:
        EsmsCallbacksError.__init__(self, message)
        self.published = 0


class PushApplyFailed(PublishFailed):
    """Publishing a batch of pushes' events stopped part way; what went out is settled, the
    rest is applied again."""

    def __init__(self, message: str) -> None:
        EsmsCallbacksError.__init__(self, message)
        self.published = 0


class BrokerFull(EsmsCallbacksError, RuntimeError):
    """The broker's Redis is out of memory: a submission was not queued."""


class NotDurable(EsmsCallbacksError):
    """Fewer replicas than ESMS_REDIS_REPLICAS confirmed a write within its timeout."""


class Retry(EsmsCallbacksError):
    """A transient failure (eSMS or broker): the RefIds are back to wait; retry the drain
    after `after_s`."""

    def __init__(self, cause: Exception, after_s: float) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.after_s = after_s


class BadInput(EsmsCallbacksError, ValueError):
    """Input from outside the project that cannot be used; the message says why."""


class InvalidSubmission(BadInput):
    """Task arguments that cannot be accepted; the message names the problem."""


class AccountNotServed(InvalidSubmission):
    """A submission for an account this deployment does not serve."""


class MalformedPush(BadInput):
    """A push that cannot be a status from eSMS; the message says why (answered with 400)."""


class UnsupportedEvent(BadInput):
    """A status event this version of the project cannot read."""


class ConfigError(EsmsCallbacksError, ValueError):
    """A setting that cannot be used; the message names the environment variable or key."""


class NoAccountNamed(ConfigError):
    """Nothing names the account's Redis keys (no ESMS_API_KEY, no ESMS_ACCOUNT): RefIds
    cannot be filed."""


class AccountUnavailable(ConfigError):
    """The accounts file names the account but its table cannot be read here now: the
    submission waits (retried) rather than being refused."""


class MissingExtra(ConfigError):
    """A command needs the `worker` extra, which is not installed."""


def printable(text: str, limit: int = 200) -> str:
    """Text from outside (eSMS answers, task argument names) as it may go into a log line or
    an error: quoted, control characters escaped (no forged lines, no terminal escapes), at
    most `limit` characters of it."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)
