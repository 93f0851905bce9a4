"""Every tuning constant of the engine and the processes, in one place: how often, how long,
how many. Users' knobs are settings (settings.py); eSMS's facts and input limits stay beside
the code that enforces them. The measurements behind the timing ones are in
docs/benchmarks.md ("The measurements behind the constants").
"""

from __future__ import annotations

# --- The limiter (engine/limiter.py; passed to its scripts as ARGV) ---
MARGIN_HALF_LIFE_S = 300.0  # how fast the margin a Code 160 added fades again
MARGIN_STEP_S = 0.002  # a 160 adds at least this to the margin (doubling what it adds)
MARGIN_STEP_SHARE = 0.05  # ... and at most this share of the endpoint's interval
STRICTEST_KEPT_S = 300.0  # a stricter interval another host used holds this long after it
MAX_WAITERS = 100  # drainers that can queue for slots (ESMS_DRAINERS is at most 100)
# A committed request normally reaches its socket within milliseconds; one that has not after
# this long (its write failed, its worker died) no longer holds the next one back.
WRITE_TIMEOUT_S = 0.25
# A commit this close to the moment the spacing allows is granted for that moment (at most a
# quarter of the spacing), and waiters come back half of it early: room for a waiter's
# wake-up and the commit's round trip on a loaded host. Pause, breaker and window are checked
# at most this long before the send.
COMMIT_AHEAD_S = 0.012
SPIN_S = 0.001  # the end of an exact sleep spent spinning rather than sleeping (engine/clock.py)

# --- This host's bounds on the Redis clock (engine/redis_time.py) ---
# How far this host's monotonic clock and the Redis host's may drift apart per second: a
# bound loosens by this much per second of age. NTP keeps hosts within ~10 ppm and slews at
# most 500 ppm (ntpd); a faster slew could still put a request early by the excess over the
# bound's age (100 ms at 5,000 ppm: 0.4 ms), inside the margin.
CLOCK_DRIFT_PER_S = 1e-3
# A bound older than this gives way to the next reading whatever its round trip (the limiter
# reads Redis's clock at every commit and every mark).
CLOCK_SAMPLE_MAX_AGE_S = 1.0

# --- Drainers (engine/drainer.py, engine/dispatch.py, tasks/) ---
REQUEST_TIME_WEIGHT = 0.2  # weight of the newest request in the request-time average
WAKE_EARLY_SHARE = 0.2  # of a spacing: how early a drainer wakes before its slot
WINDOW_EDGE_S = 60.0  # an input rejection this close to a window edge is eSMS's clock, not ours
# A drain task gives its worker slot back this often, so restarts and deploys are prompt; if
# work remains it asks for a successor.
DRAIN_BUDGET_S = 60.0
# A drain gives its place in the pool up after this long when other accounts' drains wait
# (engine/dispatch.py: turns); long enough that changing turns costs little of the rate.
FAIR_TURN_S = 10.0
# An account's wait for a turn counts while its deployment's pulses renew it (beat's, every
# ESMS_RELEASE_EVERY). While every pool slot drains, a pulse runs when a slot frees, at the
# latest as a drain's budget ends: a wait not renewed for two budgets is nobody's (an account
# removed or renamed, a deployment stopped) and is dropped (engine/waiting.py).
WAITING_STALE_S = 2 * DRAIN_BUDGET_S
WAITING_PAGE = 32  # names read from the waiting list at a time, looking for one served here
WAITING_RENEW_CHUNK = 1000  # names renewed per command
# A pulse over many accounts on a loaded machine may outlast RELEASE_LOCK_S: it renews its lock
# after so many accounts (and stops if another pulse took it), so pulses never overlap.
RELEASE_LOCK_RENEW_EVERY = 50
# Beat's pulse does each account's housekeeping (pulse mark, sweep, capacity warning: about
# 0.6 ms of Redis round trips an account) every pulse up to this many accounts; past it, each
# account's once every so many pulses, so that a pulse of 1,000 accounts stays well under
# ESMS_RELEASE_EVERY (docs/benchmarks.md, many accounts).
HOUSEKEEPING_EVERY_PULSE_UP_TO = 50
HOUSEKEEPING_EVERY_PULSES = 5
RELEASE_LOCK_S = (
    10.0  # a pulse's lock: how long a pulse may hold the next ones off (its worker dead)
)
# A Runtime replaced by an accounts-file change is closed this long after: past any drain's
# budget and its last request, so no task of a threads pool is still using its HTTP session.
RETIRED_CLOSE_AFTER_S = 2 * DRAIN_BUDGET_S
DRAIN_EXPIRES_S = 60  # a drain nobody started within this is useless: others were asked since
MAX_AUTO_DRAINERS = 6  # ESMS_DRAINERS=auto: each drainer holds a worker pool slot while it drains
ASSUMED_REQUEST_TIME_S = 0.25  # ESMS_DRAINERS=auto, until the first requests have been timed
SPAWN_LOCK_MS = 1000  # many producers may ask at once; one asking per second is enough
CAPACITY_WARNING_EVERY_S = 600  # the capacity warning is logged at most this often
STOPPING_FLAG_S = 300  # longer than any drain's step; a restarted worker clears it

# --- Giving one RefId up (retry_policy.gives_up, lone_retry_after_s) ---
# Only on evidence that eSMS refuses the RefId alone: failed alone, each time while eSMS
# answered the account's previous request, this many times over at least this long, with no
# answer for it between. With eSMS half down (half of all requests failing at random), a
# healthy RefId asked alone fails so ten times before an answer about once in 60,000
# ((1/3)^10: each lone try is answered 1/2, failed right after an answer 1/4), and the
# partial outages eSMS has last a minute or two, well inside five minutes; a RefId eSMS
# truly chokes on reaches both after about five minutes at the default ESMS_RETRY_BASE.
GIVE_UP_LONE_FAILURES = 10
GIVE_UP_LONE_SPAN_S = 300.0
# A RefId failed alone waits ESMS_RETRY_BASE, doubled with each such failure up to this: one
# RefId eSMS chokes on costs its account about one request a minute while evidence builds.
LONE_RETRY_MOST_S = 60.0

# --- The waiting set (engine/backlog.py) and the counters (engine/stats.py) ---
PARK_CHUNK = 1000  # RefIds per script call, so one huge submission never blocks Redis long
SWEEP_BUCKETS = 64  # buckets of one OA the sweeper looks at per call
RECENT_KEEP_S = 300  # how far back the rate actually used is measured
STATUS_QUEUE_SAMPLE_EVERY_S = 60.0  # how often the status queue's depth is sampled for growth

# --- Redis clients (engine/redis_connect.py) ---
SOCKET_TIMEOUT_S = 10.0
MAX_REPLICA_TIMEOUT_S = SOCKET_TIMEOUT_S / 2  # a WAIT must answer before its socket times out
HEALTH_CHECK_EVERY_S = 30

# --- The push receiver (push/receiver.py) and its applier (push/applier.py) ---
RECEIVER_RETRY_AFTER_S = 5  # what a 503 asks eSMS to wait
RECEIVER_COUNTS_FLUSH_S = 1.0  # the receiver's answer counters go to Redis this often
RECEIVER_MAX_WAITING_PUSHES = 2000  # pushes of one process waiting for their source's turn
RECEIVER_LOG_EVERY_S = 10.0  # one line per kind of refusal at most this often: no log flood
APPLIER_BATCH = 500  # entries applied together: one claim, one publish, one settle per OA
APPLIER_BLOCK_MS = 1000  # a wait for an account with pushes lasts this long (a stop is noticed)
# Applier threads of one receiver, whatever the number of accounts: each waits on the ready set
# with a connection of its own, and applies one account's batch at a time.
APPLIER_THREADS = 2
APPLIER_SWEEP_MIN_S = 0.5  # inboxes are swept each ESMS_PUSH_RECLAIM_AFTER / 4, at most this often
APPLIER_LOG_EVERY_S = 10.0  # one line per failing account at most this often: no log flood
# After SIGTERM: in-flight pushes get this long to be answered, then the appliers this long to
# finish their batch (what they leave is pending, taken over later): out well within 5 s.
RECEIVER_SHUTDOWN_S = 1.0
APPLIER_STOP_WITHIN_S = 2.0
# Longer than a loop can take when all is well: a batch applied, broker retries included.
APPLIER_STALLED_AFTER_S = 120.0
APPLIER_TIDY_EVERY_S = 600.0  # how often idle consumers are looked for
APPLIER_CONSUMER_IDLE_S = 3600.0  # a consumer idle this long, with nothing pending, is removed

# The sweep of eSMS's ledger (engine.ledger_sweep, GetSmsSentData_V2).
LEDGER_PAGE_SIZE = 500  # eSMS's most rows a page: the fewest requests
LEDGER_LAG_S = 60.0  # the last minute's records may still be being created: read next time
LEDGER_RANGE_MOST_S = 86400.0  # a range of creation times spans a day at most
LEDGER_LOCK_S = 60.0  # one sweep per account at a time; renewed at every page
LEDGER_DONE_MARGIN_S = 3600.0  # records read start this long inside the done memory
