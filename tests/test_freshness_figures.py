"""The figures of `make bench-freshness` (bench/freshness_figures.py), on made-up logs."""

from __future__ import annotations

from bench.freshness_figures import endpoint_use, lag_figures


def query(at_s: float, sms_id: str, code: int = 100) -> dict[str, object]:
    return {"endpoint": "query", "received_monotonic_s": at_s, "sms_id": sms_id, "code": code}


def test_lag_is_the_terminal_event_after_the_final_moment_by_nearest_rank():
    # given 10 RefIds final at 0 whose terminal events came 1..10 s later (one never did)
    final = {f"r{i}": 0.0 for i in range(11)}
    terminal = {f"r{i}": float(i + 1) for i in range(10)}

    # expect percentiles over the 10 that came
    lag = lag_figures(final, terminal)
    assert lag is not None
    assert (lag.count, lag.p50_s, lag.p90_s, lag.p99_s, lag.max_s) == (10, 5.0, 9.0, 10.0, 10.0)


def test_rate_used_counts_until_the_last_message_is_first_asked():
    # given three messages asked 20 ms apart at a 10 ms interval, then one asked again late
    log = [query(0.00, "a"), query(0.02, "b"), query(0.04, "c"), query(5.0, "a")]
    log.append({"endpoint": "callback", "received_monotonic_s": 0.001})

    use = endpoint_use(log, "query", 0.01, "sms_id")

    # expect half the rate over the 40 ms RefIds waited, every query counted, none early
    assert use.requests == 4
    assert round(use.waited_s, 6) == 0.04
    assert use.rate_used is not None and round(use.rate_used, 6) == 0.5
    assert (use.early, use.refused) == (0, 0)


def test_gaps_under_the_interval_and_code_160_are_counted():
    log = [query(0.0, "a"), query(0.009, "b", code=160), query(0.02, "c")]

    use = endpoint_use(log, "query", 0.01, "sms_id")

    assert (use.early, use.refused) == (1, 1)
    assert use.min_gap_s is not None and round(use.min_gap_s, 6) == 0.009
