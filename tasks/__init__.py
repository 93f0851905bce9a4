"""The Celery tasks, from a checkout: `from tasks import fetch_callbacks`, `celery -A tasks worker`.

The code is esms_callbacks.tasks; an installed app imports it by that name.
"""

from esms_callbacks.tasks import app, drain, fetch_callbacks, release

__all__ = ["app", "drain", "fetch_callbacks", "release"]
