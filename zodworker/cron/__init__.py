"""Cron: recurring jobs from a crontab or from code, added exactly once per occurrence.

One module per question, bottom up::

    phrases    how long is "2d4h"? (time phrases, both ways)
    fields     which values does each field of "*/15 9-17 * * 1-5" (or "@daily") allow?
    schedule   when does a schedule run? (day-of-month/day-of-week rule, time zones, DST)
    item       what is one cron item, and which value does each of its fields accept?
    crontab    how is a crontab line read into an item, and an item written back?
    watch      what does the crontab file say now? (reading it, reloading on edits)
    scheduler  which jobs are due this minute, added exactly once across schedulers?
    recurring  what does a recurring task declared in code look like to the scheduler and
               to its handler?

Only ``scheduler`` reaches the database, through :class:`zodworker.db.cron.CronStore`.
The package imports only the vocabulary (``zodworker.errors``, ``zodworker.events``) and
``zodworker.db``, never the worker or the face (client, command line); the face turns a
:class:`Recurring` into a worker task, using :func:`decode_tick`.
"""

from __future__ import annotations

from .crontab import format_cron_item, parse_cron_line, parse_crontab
from .item import CronItem, JobKeyMode
from .phrases import format_time_phrase, parse_time_phrase
from .recurring import CronTick, Recurring, check_recurring, decode_tick, recurring
from .schedule import CronSchedule
from .scheduler import MINUTE, Clock, CronJob, CronScheduler, SystemClock, cron_job, floor_minute
from .watch import CrontabWatcher, read_crontab

__all__ = [
    "MINUTE",
    "Clock",
    "CronItem",
    "CronJob",
    "CronSchedule",
    "CronScheduler",
    "CronTick",
    "CrontabWatcher",
    "JobKeyMode",
    "Recurring",
    "SystemClock",
    "check_recurring",
    "cron_job",
    "decode_tick",
    "floor_minute",
    "format_cron_item",
    "format_time_phrase",
    "parse_cron_line",
    "parse_crontab",
    "parse_time_phrase",
    "read_crontab",
    "recurring",
]
