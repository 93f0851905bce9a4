"""What the worker processes run on, from a checkout; the code is in the package:

    esms_callbacks/engine/   the waiting set, leases, limiter, window, breaker, the drain loop
    esms_callbacks/esms/     the eSMS client, its records and codes
    esms_callbacks/events/   status events: model, publishing, schema
    esms_callbacks/push/     eSMS's pushes: receiver, inbox, applier

A worker process builds each account's collaborators once (`Runtime`), from the deployment's
`Settings` and the `Account` its `AccountBook` resolved.
"""

from esms_callbacks.accounts import Account, AccountBook
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings

__all__ = ["Account", "AccountBook", "Runtime", "Settings"]
