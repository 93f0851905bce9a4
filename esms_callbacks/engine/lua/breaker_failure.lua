-- Count a transient failure of the account against its breaker (Breaker.record_failure; the
-- rules in breaker.lua, registered with it).
-- KEYS[1] the health hash. ARGV[1] failures in a row that open the breaker, ARGV[2] first
-- open time (us), ARGV[3] longest open time (us), ARGV[4] open at least this long (us)
-- whatever the streak (0: only by the streak).
-- Returns {failures in a row, wait (us, as text) before the account may send again (0 while
-- the breaker stays closed)}.
local failures, wait = breaker_failure(KEYS[1], now_us(), tonumber(ARGV[1]),
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
return {failures, int_text(wait)}
