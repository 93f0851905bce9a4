-- Release a lock only if its holder still holds it (engine.locks.Lock): a holder whose lock
-- ran out and was taken by another must not delete the other's.
-- KEYS[1] the lock (a string holding its holder's token).
-- ARGV[1] the holder's token.
-- Returns 1 if it was released, 0 if that token no longer held it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
