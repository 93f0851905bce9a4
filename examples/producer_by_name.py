"""A producer that knows only the task's name: no import of this project needed.

Run: python -m examples.producer_by_name OA_ID REFID [REFID ...]
"""

from __future__ import annotations

import os
import sys

from celery import Celery

TASK_NAME = "esms.fetch_callbacks"
QUEUE = "esms.fetch"


def submit(broker_url: str, ref_ids: list[str], oa_id: str) -> str:
    """Queue RefIds for status fetching; return the task id.

    Note: Celery uses the CELERY_BROKER_URL environment variable, when set, over `broker_url`.
    """
    producer = Celery(broker=broker_url)
    result = producer.send_task(TASK_NAME, kwargs={"ref_ids": ref_ids, "oa_id": oa_id}, queue=QUEUE)
    return str(result.id)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    broker = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
    print(submit(broker, sys.argv[2:], sys.argv[1]))
