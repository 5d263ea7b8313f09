"""Django: a client from ``settings.ZODWORKER``, enqueueing in ``transaction.atomic()`` on
Django's own connection, and ``manage.py zodworker`` to run a worker.

::

    # settings.py
    INSTALLED_APPS = [..., "zodworker.integrations.django"]
    ZODWORKER = {"catalog": "orders.jobs:Orders", "concurrency": 4}

    # views.py
    from django.db import transaction
    from zodworker.integrations.django import enqueue

    def create_order(request):
        with transaction.atomic():
            order = Order.objects.create(item=request.POST["item"])
            enqueue(Orders.ship, Ship(order_id=order.id))   # commits with the order
        ...

    $ python manage.py zodworker        # a worker with the project's settings

``settings.ZODWORKER`` holds :class:`~zodworker.ZodWorker` arguments: ``catalog`` (a
``TaskCatalog`` instance or class, or ``"module:attribute"``), and any of ``schema``,
``concurrency``, ``recurring_tasks``, worker options (``poll_interval``, ``history``...).
The database is the ``default`` entry of ``DATABASES`` (``"database": "other"`` picks
another alias; ``"database_url"`` overrides it). The backend must be
``django.db.backends.postgresql`` on psycopg 3.

The job is written in the transaction Django has open: it exists, and workers are woken,
only once that transaction commits, and a rollback removes it with everything else. This is
what ``transaction.on_commit(lambda: enqueue(...))`` tries to give, without its gap: a
process that dies between the commit and the callback loses that job; here it cannot.
Django's ORM is synchronous: enqueue from sync code (an async view can wrap the block in
``sync_to_async``).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
from typing import Any

from ...catalog import TaskCatalog
from ...client import ZodWorker
from ...db.connect import conninfo_from_parts
from ...db.migrate import migrate_url
from ...errors import ConfigError
from ...results import JobHandle

__all__ = ["client", "database_url", "enqueue", "make_client", "migrate", "settings"]


def settings() -> dict[str, Any]:
    """``settings.ZODWORKER`` (keys as given), checked to be a mapping with a catalog."""
    from django.conf import settings as django_settings

    found = getattr(django_settings, "ZODWORKER", None)
    if not isinstance(found, dict) or "catalog" not in found:
        raise ConfigError(
            "settings.ZODWORKER",
            'must be a dict with at least "catalog" (a TaskCatalog, or "module:attribute")',
        )
    return dict(found)


def _catalog(value: Any) -> TaskCatalog:
    if isinstance(value, str):
        module, _, attribute = value.partition(":")
        value = getattr(importlib.import_module(module), attribute)
    if isinstance(value, type) and issubclass(value, TaskCatalog):
        value = value()
    if not isinstance(value, TaskCatalog):
        raise ConfigError("settings.ZODWORKER['catalog']", f"is {value!r}, not a TaskCatalog")
    return value


def database_url(alias: str = "default") -> str:
    """A PostgreSQL URL for the ``DATABASES`` entry ``alias`` (its name, user, password, host,
    port), for the worker's own connections."""
    from django.db import connections

    entry = connections[alias].settings_dict
    if "postgresql" not in entry.get("ENGINE", ""):
        raise ConfigError(f"DATABASES[{alias!r}]", "must use django.db.backends.postgresql")
    parts = {
        "dbname": entry.get("NAME"),
        "user": entry.get("USER"),
        "password": entry.get("PASSWORD"),
        "host": entry.get("HOST"),
        "port": str(entry["PORT"]) if entry.get("PORT") else None,
    }
    return conninfo_from_parts(**parts)


@functools.cache
def client() -> ZodWorker:
    """The project's client, made once from ``settings.ZODWORKER``. It enqueues without
    ``initialize()`` (:func:`enqueue`); ``manage.py zodworker`` runs its tasks."""
    return make_client()


def make_client(**overrides: Any) -> ZodWorker:
    """A new client from ``settings.ZODWORKER`` with ``overrides`` applied."""
    options = {**settings(), **overrides}
    catalog = _catalog(options.pop("catalog"))
    alias = options.pop("database", "default")
    url = options.pop("database_url", None) or database_url(alias)
    return ZodWorker(catalog=catalog, database_url=url, **options)


def enqueue(task: Any, payload: Any, *, using: str = "default", **options: Any) -> JobHandle[Any]:
    """``client().enqueue_sync(task, payload, tx=<Django's connection using>)``: the job is
    added in the transaction ``transaction.atomic()`` has open (see the module docs)."""
    from django.db import connections

    handle: JobHandle[Any] = client().enqueue_sync(task, payload, tx=connections[using], **options)
    return handle


def migrate() -> None:
    """Install or upgrade the zodworker schema in the project's database (what the worker
    does at start; for tests, which get a fresh database, and deploy scripts)."""
    made = make_client()  # DATABASES as they are now (a test run renames the database)
    url = made.conninfo
    assert url is not None  # from DATABASES
    asyncio.run(migrate_url(url, made.schema))
