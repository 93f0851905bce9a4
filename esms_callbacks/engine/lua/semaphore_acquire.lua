-- Take or renew one place of a lease semaphore (LeaseSemaphore.acquire).
-- KEYS[1] the holders zset (token -> lease expiry, ms), KEYS[2] a flag that says the
-- holder's worker is shutting down.
-- ARGV[1] now (ms), ARGV[2] lease expiry (ms), ARGV[3] most holders, ARGV[4] token.
-- Returns 1 if the token holds a place (new or renewed), else 0 (and a stopping holder's
-- place is given up).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('ZREM', KEYS[1], ARGV[4])
  return 0
end
if redis.call('ZSCORE', KEYS[1], ARGV[4]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
  return 1
end
return 0
