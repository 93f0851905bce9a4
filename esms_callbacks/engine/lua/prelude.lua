-- The shared prelude: engine/scripts.py puts it in front of every script, right after the
-- `#!lua` line. No KEYS, no ARGV.
-- now_us(): the Redis server's clock (TIME), in microseconds since the epoch; the one clock
-- every host's scripts agree on.
-- int_text(x): a number as integer digits (rounded), as hash fields and replies hold them:
-- a fractional Lua number would be stored as `12.5` (Python's int() refuses it) and a
-- returned one truncated.

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function int_text(x)
  return string.format('%.0f', x)
end
