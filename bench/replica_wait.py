"""What the fence of a send costs when it waits for a replica (DISPATCH_REPLICA_ACKS): the
`sending` mark's write through the group commit, with and without WAIT 1, on a primary and one
replica on this host, one thread and 64 (a worker's pool). `python -m bench.replica_wait`."""

from __future__ import annotations

import statistics
import threading
import time

import redis

from devtools.localstack import RedisServer, tmpdir, wait_for
from worker.redis_conn import SHORT_WAIT_BACKOFF, Durability, GroupCommit, durable_pipeline, short_waits

WRITES = 4000


def run(client: redis.Redis, durability: Durability, threads: int) -> tuple[float, float]:
    """(median ms per write as a caller sees it, writes a second) for WRITES writes over `threads`."""
    group = GroupCommit(client, durability)
    latencies: list[float] = []
    each = WRITES // threads

    def work(n: int) -> None:
        for i in range(each):
            started = time.perf_counter()
            group.execute(
                lambda pipe, i=i: pipe.hset(f"wa:idem:bench-{n}-{i}", "state", "sending"), durable=True
            )
            latencies.append((time.perf_counter() - started) * 1000)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return statistics.median(latencies), each * threads / (time.perf_counter() - started)


def _acked(client: redis.Redis) -> bool:
    pipe = durable_pipeline(client, Durability(1, 100))
    pipe.set("wa:bench:warm", 1)
    pipe.execute()
    return getattr(pipe, "acked", 0) == 1


def main() -> None:
    workdir = tmpdir("wa-bench-wait-")
    primary = RedisServer(workdir, name="redis-primary").start()
    replica = RedisServer(workdir, name="redis-replica", replica_of=primary.port).start()
    try:
        wait_for(lambda: replica.client().info("replication")["master_link_status"] == "up", 10, "sync")
        client = redis.Redis(port=primary.port, decode_responses=True)
        wait_for(lambda: _acked(client), 10, "the replica's first acknowledgement")  # ~1 s after a sync
        print("threads  WAIT  median ms/write  writes/s")
        for threads in (1, 64):
            for durability in (Durability(), Durability(1, 100)):
                short_waits.short_at = -SHORT_WAIT_BACKOFF  # each run starts waiting
                median, rate = run(client, durability, threads)
                assert short_waits.count == 0, "a wait ran out: the numbers are not of WAIT"
                wait = "1" if durability.replicas else "-"
                print(f"{threads:>7}  {wait:>4}  {median:>15.3f}  {rate:>8.0f}")
                client.flushdb()
    finally:
        replica.kill()
        primary.kill()


if __name__ == "__main__":
    main()
