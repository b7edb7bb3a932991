"""Campaign schedules in celery beat, through celery-redbeat.

RedBeat keeps the schedule in Redis and holds a lock, so a second beat process stands by
instead of firing the same run twice; entries written by `load` are picked up by a running
beat without a restart. Cron expressions become RRULEs in the campaign's own time zone, so
"0 9 * * FRI" means 09:00 in Asia/Kolkata whatever zone the servers run in.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from celery.schedules import schedule as every_schedule
from celery.signals import beat_init
from redbeat import RedBeatSchedulerEntry
from redbeat.schedules import rrule

from worker.campaigns.spec import Campaign, cron_fields, load_campaign
from worker.ops.logs import get_logger
from worker.redis_conn import get_redis

log = get_logger("whatsapp_dispatch.scheduling")
DEF_PREFIX = "wa:campaign:def:"


def beat_schedule_of(campaign: Campaign) -> Any:
    spec = campaign.schedule
    if spec.every is not None:
        return every_schedule(run_every=timedelta(seconds=spec.every))
    if spec.at is not None:
        at = spec.at if spec.at.tzinfo else spec.at.replace(tzinfo=campaign.zone)
        return rrule("MINUTELY", dtstart=at, count=1)
    minute, hour, day, month, weekday = cron_fields(spec.cron or "")
    start = datetime.now(campaign.zone).replace(second=0, microsecond=0)
    return rrule(
        "MINUTELY",
        dtstart=start,
        byminute=minute,
        byhour=hour,
        bymonthday=day,
        bymonth=month,
        byweekday=[(d - 1) % 7 for d in weekday] if weekday else None,
    )


def run_id_now(campaign: Campaign, now: datetime) -> str:
    """The run a firing belongs to: the same for every firing of one scheduled slot."""
    spec = campaign.schedule
    if spec.every is not None:
        return str(int(now.timestamp() // spec.every * spec.every))
    if spec.at is not None:
        return "at-" + (spec.at if spec.at.tzinfo else spec.at.replace(tzinfo=campaign.zone)).strftime(
            "%Y%m%dT%H%M%z"
        )
    return now.astimezone(campaign.zone).strftime("%Y%m%dT%H%M")


def entry_name(name: str) -> str:
    return f"campaign:{name}"


def save(app: Celery, campaign: Campaign) -> None:
    """Store the campaign (with its audience) and (re)write its beat entry."""
    get_redis().set(DEF_PREFIX + campaign.name, campaign.model_dump_json())
    RedBeatSchedulerEntry(
        entry_name(campaign.name),
        "worker.tasks.run_campaign",
        beat_schedule_of(campaign),
        kwargs={"name": campaign.name},
        options={"queue": "campaign"},
        app=app,
    ).save()
    log.info("campaign_loaded", campaign=campaign.name, recipients=len(campaign.rows))


def remove(app: Celery, name: str) -> None:
    get_redis().delete(DEF_PREFIX + name)
    with contextlib.suppress(KeyError):
        RedBeatSchedulerEntry.from_key(RedBeatSchedulerEntry(entry_name(name), app=app).key, app=app).delete()


def stored(name: str) -> Campaign | None:
    raw = get_redis().get(DEF_PREFIX + name)
    return Campaign.model_validate(json.loads(raw)) if raw else None


def load_paths(app: Celery, paths: list[Path]) -> list[Campaign]:
    files = [f for p in paths for f in (sorted(p.glob("*.toml")) if p.is_dir() else [p])]
    campaigns = [load_campaign(f) for f in files]  # all valid, or none saved
    for campaign in campaigns:
        save(app, campaign)
    return campaigns


@beat_init.connect
def _load_at_beat_start(sender: Any = None, **_: Any) -> None:
    """Beat loads DISPATCH_CAMPAIGNS (files or directories, ':'-separated) when it starts."""
    spec = os.environ.get("DISPATCH_CAMPAIGNS")
    if spec and sender is not None:
        load_paths(sender.app, [Path(p) for p in spec.split(os.pathsep) if p])
