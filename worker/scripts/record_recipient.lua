-- A recipient's line in a campaign run's report (worker.campaigns.runs.CampaignRuns.record):
-- the first write wins and only it is counted, so a chunk that runs twice counts nobody twice.
-- KEYS: the run's report hash, its counters hash.
-- ARGV: recipient, the entry as JSON, the counter to add one to.
-- Returns: 1 when recorded, else 0.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  return 1
end
return 0
