-- Build the account's queue of OAs and its count of RefIds from a backlog parked by a
-- version before them (ensure_layout); a no-op once built. KEYS[1] the account's OAs with
-- work, KEYS[2] its queue of OAs, KEYS[3] its backlog hash (see backlog_prelude.lua).
-- ARGV[1] the account's per-OA prefix. Returns 1 when it built them, 0 when they were.
if ensure_layout(KEYS[1], KEYS[2], KEYS[3], ARGV[1]) then return 1 end
return 0
