"""What the worker processes run on, from a checkout; the code is in the package:

    esms_callbacks/engine/   the waiting set, leases, limiter, window, breaker, the drain loop
    esms_callbacks/esms/     the eSMS client, its records and codes
    esms_callbacks/events/   status events: model, publishing, schema
    esms_callbacks/push/     eSMS's pushes: receiver, inbox, applier

A worker process builds its collaborators once from its settings (`Runtime`).
"""

from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings

__all__ = ["Runtime", "Settings"]
