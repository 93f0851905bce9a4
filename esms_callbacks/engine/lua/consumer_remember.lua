-- A consumer's store (events/stores.py, RedisEventStore.remember): keep a RefId's furthest
-- state, the one its handler last took.
-- KEYS[1]  the RefId's hash (fields `rank`, `event_id`)
-- ARGV[1]  the event's rank (esms.records.state_rank)
-- ARGV[2]  the event's event_id
-- ARGV[3]  seconds the hash lives after its last change
-- Returns 1 when the event moved the RefId further, 0 when a further one was kept already.

local rank = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
if tonumber(ARGV[1]) <= rank then
  return 0
end
redis.call('HSET', KEYS[1], 'rank', ARGV[1], 'event_id', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
