"""eSMS's result codes (from eSMS's public docs, docs/esms/getcallback.md and
docs/esms/status-endpoints.md) and the error each one raises (esms_callbacks.errors)."""

from __future__ import annotations

from esms_callbacks.errors import (
    AuthError,
    BalanceError,
    EsmsError,
    NotReady,
    RateLimited,
    RequestRejected,
    UnexpectedCode,
)

SUCCESS_CODE = 100
NO_DATA_CODE = 854  # QueryZnsStatus: no data for that SmsId (yet); an answer, not a failure
NOT_FOUND_YET_CODE = 105  # "SMSID not found yet": for one message, the same answer as 854
ERROR_BY_CODE: dict[int, type[EsmsError]] = {
    101: AuthError,
    140: AuthError,
    143: AuthError,
    103: BalanceError,
    105: NotReady,
    160: RateLimited,
    99: RequestRejected,
    110: RequestRejected,
    204: RequestRejected,
    799: RequestRejected,
    851: RequestRejected,
    854: RequestRejected,
}
CODE_MEANINGS: dict[int, str] = {
    100: "success",
    101: "wrong ApiKey or SecretKey",
    103: "not enough balance",
    105: "SMSID not found yet",
    140: "IP address not whitelisted",
    143: "account locked",
    160: "request rate exceeded",
}


def error_for_code(code: int, esms_message: str) -> EsmsError:
    """Build the error for a non-success eSMS Code, keeping eSMS's code and message."""
    kind = ERROR_BY_CODE.get(code, UnexpectedCode)
    meaning = CODE_MEANINGS.get(code, "undocumented code" if kind is UnexpectedCode else "refused")
    return kind(
        f"eSMS answered Code {code} ({meaning}): {esms_message!r}",
        code=code,
        esms_message=esms_message,
    )
