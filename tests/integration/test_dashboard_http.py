"""The dashboard's security and its fit with a database only Node graphile-worker has used,
over real HTTP to a real server process (the browser tests are in tests/browser)."""

from __future__ import annotations

import base64
import re
import textwrap

import httpx
import psycopg

from tests.browser.test_dashboard import seed, start_dashboard
from tests.support.graphile import graphile_worker, node_conninfo
from tests.support.procs import Procs
from zodworker.admin import SyncAdmin

PAGES = (
    "/",
    "/jobs",
    "/jobs?state=ready",
    "/jobs?text=x",
    "/failed",
    "/history",
    "/queues",
    "/limits",
    "/workers",
    "/cron",
)


def _csrf(client: httpx.Client, url: str) -> str:
    page = client.get(url + "/queues")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def test_actions_need_the_csrf_token_and_the_same_origin(procs: Procs, db_url: str) -> None:
    ids = seed(db_url)
    url = start_dashboard(procs, db_url)
    with httpx.Client() as client:
        token = _csrf(client, url)
        for form, headers in [
            ({}, {}),  # no token
            ({"csrf": "forged"}, {}),  # a token that is not the cookie's
            ({"csrf": token}, {"origin": "http://evil.example"}),  # right token, other site
        ]:
            answer = client.post(f"{url}/jobs/{ids['failed']}/delete", data=form, headers=headers)
            assert answer.status_code == 403, answer.text
        with psycopg.connect(db_url, autocommit=True) as conn:
            assert SyncAdmin().get_job(conn, ids["failed"]) is not None
        # the same host through a TLS-terminating proxy: the browser's origin says https
        same_host = {"origin": url.replace("http://", "https://")}
        answer = client.post(
            f"{url}/jobs/{ids['failed']}/delete", data={"csrf": token}, headers=same_host
        )
        assert answer.status_code == 303
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert SyncAdmin().get_job(conn, ids["failed"]) is None


def test_a_token_or_basic_credentials_guard_every_page(procs: Procs, db_url: str) -> None:
    url = start_dashboard(procs, db_url, "--token", "s3cret", "--basic-auth", "ops:pw")
    with httpx.Client(follow_redirects=False) as client:
        for path in (*PAGES, "/live/overview"):
            assert client.get(url + path).status_code == 401
        assert client.get(url + "/", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get(url + "/", headers={"authorization": "Bearer s3cret"}).status_code == 200
        basic = base64.b64encode(b"ops:pw").decode()
        assert client.get(url + "/", headers={"authorization": f"Basic {basic}"}).status_code == 200
        login = client.get(
            url + "/jobs?token=s3cret&state=ready&text=a%26b", follow_redirects=False
        )
        assert login.status_code == 303
        assert login.headers["location"] == "/jobs?state=ready&text=a%26b"  # kept, encoded
        assert client.get(url + "/jobs?state=ready").status_code == 200  # the cookie now


def test_a_non_loopback_bind_without_credentials_is_refused(procs: Procs, db_url: str) -> None:
    proc = procs.zodworker("dashboard", "-c", db_url, "--host", "0.0.0.0", "--port", "1")
    assert proc.wait_exit(within=30) == 1
    assert "not a loopback address: give --token or --basic-auth" in proc.output()


NODE_FILL = textwrap.dedent(
    """
    import { makeWorkerUtils } from "graphile-worker";
    const utils = await makeWorkerUtils({ connectionString: process.argv[2] });
    await utils.addJob("email", { to: "<i>x</i>" }, { queueName: "mail" });
    await utils.addJob("report", { n: 1 }, { maxAttempts: 1 });
    await utils.release();
    """
)


def test_every_page_renders_on_a_database_only_node_has_used(
    procs: Procs, empty_db_url: str
) -> None:
    gw = graphile_worker()
    gw.schema_only(empty_db_url, "graphile_worker")
    gw.node_script(NODE_FILL, node_conninfo(empty_db_url))
    url = start_dashboard(procs, empty_db_url)
    with httpx.Client() as client:
        for path in PAGES:
            answer = client.get(url + path)
            assert answer.status_code == 200, (path, answer.text)
        assert "email" in client.get(url + "/jobs").text
        for path in ("/queues", "/workers", "/", "/history"):
            assert "needs zodworker&#39;s tables" in client.get(url + path).text
        queues = client.get(url + "/queues").text  # listed from graphile-worker's tables
        assert 'data-queue="mail"' in queues and 'method="post"' not in queues
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            [job] = [v.job for v in SyncAdmin().list_jobs(conn).jobs if v.job.queue_name]
        page = client.get(f"{url}/jobs/{job.id}")
        assert page.status_code == 200 and "&lt;i&gt;x&lt;/i&gt;" in page.text
        # an action that needs zodworker's tables says so, and changes nothing
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        refused = client.post(f"{url}/jobs/{job.id}/cancel", data={"csrf": token.group(1)})
        assert refused.status_code == 409 and "needs zodworker&#39;s tables" in refused.text
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            view = SyncAdmin().get_job(conn, job.id)
            assert view is not None and view.state == "ready"
