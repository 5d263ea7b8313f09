"""The dashboard: see and steer every queue of a graphile-worker schema from a browser.

::

    from zodworker.web import create_app

    app = create_app("postgresql://localhost/app")          # an ASGI app
    fastapi_app.mount("/jobs-admin", create_app(pool, read_only=True))

or ``zodworker dashboard [--host 127.0.0.1] [--port 8080] [--crontab FILE]``. Pages: the
overview (jobs by task, queue and state, throughput per minute, oldest ready job per queue,
live pools; it updates itself), jobs (filters, keyset pages, bulk retry / cancel /
reschedule / delete after a confirmation with the count), one job, failed jobs grouped by
error, queues (pause/resume), worker pools and cron items. Server-rendered (Starlette and
Jinja2) with htmx; live parts are server-sent events; the few static files ship in the
package (no build step, no CDN). It is built on the admin API (:mod:`zodworker.admin`), so
it works on any graphile-worker 0.18 database: what needs zodworker's own tables (pausing
queues, cancelling, live pools) says so on a database only Node workers have used.

Security: every action is a POST carrying a CSRF token (a double-submit cookie) from the
same origin; ``read_only=True`` hides and refuses every action; ``token`` (a bearer token,
also accepted once as ``?token=`` and kept in a cookie) or ``basic_auth`` protects every
page. Payloads and errors are escaped; filters reach SQL only as parameters. Needs the
``web`` extra: ``pip install 'zodworker[web]'``.
"""

from __future__ import annotations

from .app import create_app
from .dashboard import Dashboard

__all__ = ["Dashboard", "create_app"]
