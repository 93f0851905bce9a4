-- Prelude: the one GCRA (generic cell rate algorithm) rule, shared by the limiter's reserve
-- (limiter_reserve.lua) and the push inbox's per-source rate (inbox_record.lua). No KEYS, no
-- ARGV: each caller reads and stores the theoretical arrival time (tat) where it keeps it.
--
-- gcra(tat, now, step, burst), all in us: `tat` the stored theoretical arrival time (0 if
-- none), `now` the Redis clock, `step` the spacing between two turns, `burst` how far ahead
-- of its spacing a sender may run. Returns the new tat (to store if the caller takes the
-- turn) and the wait until the turn (<= 0: the turn is now).

local function gcra(tat, now, step, burst)
  local start = math.max(tat, now)
  return start + step, start - now - burst
end
