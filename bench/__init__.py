"""Benchmarks: `python -m bench.perf_bench` (`make bench`) prints the performance table,
with Celery's own rate_limit beside this project where it applies.

    perf_bench.py    command line: which scenarios, extra environment, the table
    scenarios.py     the scenarios and their targets
    runner.py        one scenario: simulator, workers and beat, submission, waiting
    naive.py         Celery's own rate_limit on the same terms (naive_app.py is its app)
    env.py           the environment of the workers and beat, from plain variables
    submit.py        producers: groups of RefIds, a paced producer thread
    status_queue.py  status events read straight from the broker's Redis list
    measure.py       figures from the simulator's request log
    outcome.py       one row; report.py renders the rows

Workers, beat and the receiver are started, measured and stopped by esms_callbacks.cli.processes,
as `esms-callbacks run` and the tests start them.
"""
