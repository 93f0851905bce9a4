-- Extend a lock's time to live if its holder still holds it (engine.locks.Lock.extend): a
-- long holder keeps others off, and one that lost its lock learns so.
-- KEYS[1] the lock (a string holding its holder's token).
-- ARGV[1] the holder's token, ARGV[2] the new time to live (ms).
-- Returns 1 if it was extended, 0 if that token no longer held it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
