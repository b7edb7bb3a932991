"""Crash-recovery soak: `python -m bench.recovery_soak [--kills 20] [--brokers redis rabbitmq]`.

For each broker, a private deployment (redis-server, the sandbox at 50 ms, one worker of 64
threads at the default 80 msg/s), then KILLS rounds of: 400 intents enqueued through the project's
app, the busy worker SIGKILLed a third of the way in, a new one started at once. Each round must
settle every intent (a wamid, or `ambiguous` for a request that may have reached the API), none
twice, with nothing re-sent by hand. Prints the time from SIGKILL to the last intent settled.
Needs the machine's RabbitMQ (127.0.0.1:5672, guest/guest, rabbitmqctl) for that broker.
"""

from __future__ import annotations

import argparse
import statistics

from rich.console import Console
from rich.table import Table

from tests.faults.rig import PRODUCTION_RATE, Rig
from tests.harness import tmpdir

BATCH = 400


def soak(broker: str, kills: int) -> list[float]:
    rig = Rig(
        tmpdir("wa-soak-"),
        workers=1,
        persistent_redis=False,
        latency=0.05,
        probe_interval=30,
        rate_limit=PRODUCTION_RATE,
        broker=broker,
        concurrency=64,
        production_timings=True,
    )
    times = []
    try:
        for k in range(kills):
            times.append(rig.kill_mid_batch(BATCH, first=k * BATCH))
            print(f"{broker} kill {k + 1}/{kills}: settled {times[-1]:.1f}s after SIGKILL", flush=True)
    finally:
        rig.stop()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--brokers", nargs="+", default=["redis", "rabbitmq"], choices=["redis", "rabbitmq"])
    args = parser.parse_args(argv)
    table = Table(title=f"SIGKILL to last intent settled ({BATCH} intents a kill, production defaults)")
    for column in ("broker", "kills without a lost intent", "median s", "max s", "fastest s"):
        table.add_column(column, justify="right")
    for broker in args.brokers:
        times = soak(broker, args.kills)
        table.add_row(
            broker,
            f"{len(times)}/{args.kills}",
            f"{statistics.median(times):.1f}",
            f"{max(times):.1f}",
            f"{min(times):.1f}",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
