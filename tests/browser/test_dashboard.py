"""The dashboard in a real browser (Debian's Chromium driven by Playwright), against a real
database and real worker processes. Each test does what an operator would and then asserts
what the database holds. Screenshots of each page land in ``$ZODWORKER_ARTEFACTS`` (default
``test-artefacts/dashboard``)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.procs import Proc, Procs, poll_until
from zodworker import JobSpec, Limit, Rate, SyncStore
from zodworker.admin import JobFilter, SyncAdmin
from zodworker.db.cron import CronStore

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = playwright.expect

ARTEFACTS = Path(os.environ.get("ZODWORKER_ARTEFACTS", "test-artefacts")) / "dashboard"
LIVE_WITHIN_MS = 2000


def _chromium() -> str:
    for candidate in (os.environ.get("ZODWORKER_TEST_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.skip("no Chromium to drive: .ci/run installs Debian's `chromium` package")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_dashboard(procs: Procs, db_url: str, *args: str) -> str:
    port = _free_port()
    proc = procs.zodworker("dashboard", "-c", db_url, "--port", str(port), *args)
    proc.wait_for("zodworker dashboard on", within=30)
    url = f"http://127.0.0.1:{port}"
    poll_until(lambda: _answers(url), within=10, what="the dashboard to answer")
    return url


def _answers(url: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1):
            return True
    except OSError:
        return False


def shot(page: Any, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


TASKS = {
    "slow.py": "import asyncio\nasync def task(payload, helpers):\n    await asyncio.sleep(120)\n",
    "quick.py": "def task(payload, helpers):\n    return None\n",
}


def start_worker(procs: Procs, db_url: str, tmp_path: Path, *args: str) -> Proc:
    tasks = tmp_path / "tasks"
    tasks.mkdir(exist_ok=True)
    for name, text in TASKS.items():
        (tasks / name).write_text(textwrap.dedent(text))
    env = {"ZODWORKER_HEARTBEAT_INTERVAL": "0.5"}  # its counts reach the table sooner
    return procs.zodworker("-c", db_url, "--tasks", str(tasks), "-j", "4", *args, env=env)


def seed(db_url: str) -> dict[str, int]:
    """Jobs of several tasks and queues, one failed for good with a traceback and markup."""
    store = SyncStore()
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = {}
        ids["mail"] = store.add_job(conn, "sendEmail", {"to": "<script>alert(1)</script>"}).id
        for i in range(3):
            store.add_job(conn, "resize", {"n": i}, queue_name="images")
        failed = store.add_job(conn, "charge", {"amount": 5}, max_attempts=1).id
        conn.execute(
            "update graphile_worker._private_jobs set attempts = 1, last_error = %s where id = %s",
            [
                "Traceback (most recent call last):\n  File x\nValueError: <b>card declined</b>",
                failed,
            ],
        )
        ids["failed"] = failed
        return ids


def admin_state(db_url: str, job_id: int) -> str | None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        view = SyncAdmin().get_job(conn, job_id)
        return None if view is None else view.state


def test_overview_filter_and_job_page_show_the_database_escaped(
    page: Any, procs: Procs, db_url: str
) -> None:
    ids = seed(db_url)
    url = start_dashboard(procs, db_url)
    page.goto(url + "/")
    expect(page.locator("#total-ready")).to_have_text("4")
    expect(page.locator("#total-failed")).to_have_text("1")
    shot(page, "overview")

    page.goto(url + "/jobs")
    page.fill("input[name=task]", "resize")
    page.click("form.filters button")
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    assert set(page.locator("#jobs tbody tr td:nth-child(3)").all_inner_texts()) == {"resize"}
    shot(page, "jobs-filtered")

    page.goto(f"{url}/jobs/{ids['mail']}")
    expect(page.locator("#payload")).to_contain_text('"to": "<script>alert(1)</script>"')
    assert page.locator("#payload script").count() == 0  # shown as text, not markup
    page.goto(f"{url}/jobs/{ids['failed']}")
    expect(page.locator("#last-error")).to_contain_text("ValueError: <b>card declined</b>")
    shot(page, "job-failed")
    page.goto(url + "/failed")
    expect(page.locator("#failed")).to_contain_text("ValueError: <b>card declined</b>")
    shot(page, "failed")


def test_retry_a_failed_job_and_pause_and_resume_a_queue(
    page: Any, procs: Procs, db_url: str
) -> None:
    ids = seed(db_url)
    url = start_dashboard(procs, db_url)
    page.goto(f"{url}/jobs/{ids['failed']}")
    page.click("#retry")
    expect(page.locator("p.done")).to_contain_text("retry: done")
    assert admin_state(db_url, ids["failed"]) in ("ready", "retrying")  # runnable again

    page.goto(url + "/queues")
    page.click("tr[data-queue=images] button")
    expect(page.locator("p.done")).to_contain_text("images: paused")
    shot(page, "queues-paused")
    with psycopg.connect(db_url, autocommit=True) as conn:
        [paused] = SyncAdmin().list_queues(conn)
        assert paused.name == "images" and paused.paused
    page.click("tr[data-queue=images] button")
    expect(page.locator("p.done")).to_contain_text("images: resumed")
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert not SyncAdmin().list_queues(conn)[0].paused


def test_bulk_delete_by_filter_confirms_the_count_first(
    page: Any, procs: Procs, db_url: str
) -> None:
    seed(db_url)
    url = start_dashboard(procs, db_url)
    page.goto(url + "/jobs?queue=images")
    page.click("form.bulk button[value=delete]")
    expect(page.locator("h1")).to_have_text("Delete 3 jobs?")
    shot(page, "confirm-delete")
    with psycopg.connect(db_url, autocommit=True) as conn:  # nothing yet
        assert SyncAdmin().count_jobs(conn, JobFilter(queue="images")).value == 3
    page.click("#confirm")
    expect(page.locator("p.done")).to_contain_text("delete: 3 jobs")
    with psycopg.connect(db_url, autocommit=True) as conn:
        admin = SyncAdmin()
        assert admin.count_jobs(conn, JobFilter(queue="images")).value == 0
        assert admin.count_jobs(conn).value == 2  # the others are untouched


def test_cancel_a_running_job(page: Any, procs: Procs, db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        job_id = SyncStore().add_job(conn, "slow", {}).id
    start_worker(procs, db_url, tmp_path)
    poll_until(lambda: admin_state(db_url, job_id) == "running", within=30, what="slow to run")
    url = start_dashboard(procs, db_url)
    page.goto(f"{url}/workers")
    expect(page.locator("#workers tbody tr")).to_have_count(1)
    expect(page.locator("#workers td[data-running]")).to_have_text("1")
    shot(page, "workers")
    page.goto(f"{url}/jobs/{job_id}")
    expect(page.locator("#state")).to_have_text("running")
    page.click("#cancel")
    expect(page.locator("p.done")).to_contain_text("cancelled (told")
    poll_until(lambda: admin_state(db_url, job_id) == "failed", within=30, what="the job aborted")
    page.goto(f"{url}/jobs/{job_id}")
    expect(page.locator("#state")).to_have_text("failed")
    shot(page, "job-cancelled")


def test_a_job_a_worker_completes_leaves_open_pages_within_2s(
    browser: Any, procs: Procs, db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        job_id = SyncStore().add_jobs(conn, [JobSpec(identifier="quick")])[0].id
        SyncStore().add_job(conn, "other", {})  # no worker runs it: stays ready
    url = start_dashboard(procs, db_url)
    context = browser.new_context()
    overview, jobs = context.new_page(), context.new_page()
    overview.goto(url + "/")
    jobs.goto(url + "/jobs")
    expect(overview.locator("#total-ready")).to_have_text("2")
    expect(jobs.locator(f"tr[data-job='{job_id}']")).to_have_count(1)
    start_worker(procs, db_url, tmp_path)
    poll_until(lambda: admin_state(db_url, job_id) is None, within=30, what="quick to complete")
    done_at = time.monotonic()
    expect(overview.locator("#total-ready")).to_have_text("1", timeout=LIVE_WITHIN_MS)
    expect(jobs.locator(f"tr[data-job='{job_id}']")).to_have_count(0, timeout=LIVE_WITHIN_MS)
    print(f"pages showed the completion {time.monotonic() - done_at:.2f} s after it")
    # throughput: the pool's heartbeat carries its count; PostgreSQL counts the deletion
    for rate in ("#rate-completed", "#rate-deleted"):
        expect(overview.locator(rate)).to_have_text(re.compile(r"^[1-9][0-9]*$"), timeout=8000)
    expect(overview.locator("#pools")).to_have_count(1)
    expect(overview.locator("#pools td[data-completed]")).to_have_text("1")
    assert overview.url.rstrip("/") == url  # no reload, no navigation
    shot(overview, "overview-live")
    context.close()


def test_read_only_hides_every_action_and_refuses_posts(
    page: Any, procs: Procs, db_url: str
) -> None:
    ids = seed(db_url)
    url = start_dashboard(procs, db_url, "--read-only")
    for path in ("/jobs", f"/jobs/{ids['failed']}", "/queues", "/failed"):
        page.goto(url + path)
        expect(page.locator("form[method=post]")).to_have_count(0)
    response = page.request.post(f"{url}/jobs/{ids['failed']}/delete", form={"csrf": "x"})
    assert response.status == 403
    assert admin_state(db_url, ids["failed"]) == "failed"


def test_text_filter_then_bulk_reschedule_and_cancel(page: Any, procs: Procs, db_url: str) -> None:
    ids = seed(db_url)
    url = start_dashboard(procs, db_url)
    page.goto(url + "/jobs")
    page.fill("input[name=text]", "ALERT(1)")  # found in the payload's text, any case
    page.click("form.filters button")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator(f"tr[data-job='{ids['mail']}']")).to_have_count(1)

    page.goto(url + "/jobs?queue=images")
    page.fill("input[name=minutes]", "90")
    page.click("form.bulk button[value=reschedule]")
    expect(page.locator("h1")).to_have_text("Reschedule 3 jobs?")
    page.click("#confirm")
    expect(page.locator("p.done")).to_contain_text("reschedule: 3 jobs")
    with psycopg.connect(db_url, autocommit=True) as conn:
        [(moved,)] = conn.execute(
            "select count(*) from graphile_worker.jobs where queue_name = 'images'"
            " and run_at > now() + interval '89 minutes'"
        ).fetchall()
        assert moved == 3

    page.goto(url + "/jobs?task=sendEmail")
    page.click("form.bulk button[value=cancel]")
    expect(page.locator("h1")).to_have_text("Cancel 1 job?")
    shot(page, "confirm-cancel")
    page.click("#confirm")
    expect(page.locator("p.done")).to_contain_text("cancel: 1 jobs")
    with psycopg.connect(db_url, autocommit=True) as conn:
        view = SyncAdmin().get_job(conn, ids["mail"])
        assert view is not None and (view.state, view.job.last_error) == ("failed", "cancelled")


def test_cron_page_shows_what_the_database_knows_and_the_next_runs(
    page: Any, procs: Procs, db_url: str, tmp_path: Path
) -> None:
    async def register() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await CronStore(conn, "graphile_worker").register(["tidy"], datetime.now(UTC))

    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this thread
        thread.submit(asyncio.run, register()).result()
    crontab = tmp_path / "crontab"
    crontab.write_text("0 4 * * * tidy ?id=tidy\n*/5 * * * * ping ?id=ping&tz=Europe/Paris\n")
    url = start_dashboard(procs, db_url, "--crontab", str(crontab))
    page.goto(url + "/cron")
    tidy, ping = page.locator("tr[data-item=tidy]"), page.locator("tr[data-item=ping]")
    expect(tidy).to_contain_text("0 4 * * *")
    expect(tidy.locator("td.last")).to_have_text("never")
    expect(ping).to_contain_text("not yet registered")
    expect(ping).to_contain_text("(Europe/Paris)")
    assert len(ping.locator("td.next").inner_text().splitlines()) == 3
    shot(page, "cron")


def test_limits_page_shows_waiting_jobs_and_sets_and_resets_a_limit(
    page: Any, procs: Procs, db_url: str
) -> None:
    tenant = Limit("tenant", concurrency=2, key=lambda p: p["t"])
    with psycopg.connect(db_url, autocommit=True) as conn:
        specs = [JobSpec(identifier="bill", payload={"t": f"t{n % 3}"}) for n in range(5)]
        SyncStore().add_jobs(conn, specs, limits=[[tenant]] * 5)
    url = start_dashboard(procs, db_url)
    page.goto(url + "/limits")
    row = page.locator("tr[data-limit=tenant]")
    expect(row.locator("td").nth(1)).to_have_text("2")
    expect(row.locator("td").nth(4)).to_have_text("3")  # keys
    expect(row.locator("td").nth(6)).to_have_text("5")  # waiting
    row.locator("input[name=concurrency]").fill("7")
    row.locator("input[name=rate]").fill("10/2")
    row.locator("button", has_text="Set").click()
    expect(page.locator("p.done")).to_contain_text("tenant: set")
    shot(page, "limits-set")
    with psycopg.connect(db_url, autocommit=True) as conn:
        [info] = SyncAdmin().limits(conn)
    assert (info.concurrency, info.rate, info.overridden) == (7, Rate(10, 2.0), True)
    page.locator("tr[data-limit=tenant] button", has_text="Reset").click()
    expect(page.locator("p.done")).to_contain_text("tenant: reset")
    expect(page.locator("tr[data-limit=tenant] td").nth(3)).to_have_text("code")
    page.locator("tr[data-limit=tenant] input[name=concurrency]").fill("many")
    page.locator("tr[data-limit=tenant] button", has_text="Set").click()
    expect(page.locator("body")).to_contain_text("is not a whole number")
