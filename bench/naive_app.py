"""The comparison: Celery's own `rate_limit`, the way most projects first try it.

Each task POSTs one GetCallback for the RefIds it was given. `rate_limit` is enforced per
worker instance (Celery docs, Task.rate_limit), so N workers send N times the rate.
"""

from __future__ import annotations

import json
import os
import urllib.request

from celery import Celery

app = Celery("naive", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(
    task_default_queue="bench.naive", worker_prefetch_multiplier=1, task_ignore_result=True
)
RATE_PER_S = float(os.environ.get("BENCH_RATE_PER_S", "1"))


@app.task(name="bench.naive_fetch", rate_limit=f"{RATE_PER_S:g}/s")
def naive_fetch(ref_ids: list[str], oa_id: str) -> int:
    body = {
        "ApiKey": os.environ["ESMS_API_KEY"],
        "SecretKey": os.environ["ESMS_SECRET_KEY"],
        "ListRefid": ref_ids,
        "OAId": oa_id,
    }
    request = urllib.request.Request(
        os.environ["ESMS_BASE_URL"] + "/ZaloCallback/GetCallback",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        code: int = json.loads(response.read())["Code"]
        return code
