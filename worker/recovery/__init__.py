"""Crash recovery: a killed worker's messages are sent by the others within seconds.

- `nodes`: every consuming worker process has a node id and a heartbeat in Redis; a claim's owner
  is alive exactly while its node beats.
- `ledger`: every task published through this app is recorded until it settles, so a message that
  the Redis transport popped into a dying worker's socket (before recording it as unacknowledged)
  is found and published again.
- `recoverer`: in every worker, one at a time, restores the unacknowledged messages of dead nodes to
  their queues at once (each node keeps its own unacknowledged set), and audits the ledger.

With RabbitMQ as the broker the broker itself returns a dead consumer's messages; only the
heartbeats (for claims) run.
"""
