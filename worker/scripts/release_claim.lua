-- Release an HTTP API idempotency claim (worker.web.enqueue) only while it is still ours: a
-- retry may have claimed the key since, and its claim must stand.
-- KEYS: the claim.
-- ARGV: the value we claimed it with ("<task id> <fingerprint>").
-- Returns: 1 when deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
