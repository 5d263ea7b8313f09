"""The example project's own tests, with Django's test runner against real PostgreSQL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection
from django.test import TestCase, TransactionTestCase
from psycopg.conninfo import make_conninfo

from orders.models import Order
from zodworker.integrations.django import database_url, migrate

PROJECT = Path(__file__).resolve().parent.parent


def jobs() -> list[tuple[str, dict]]:
    """The jobs in the table: (task, payload)."""
    with connection.cursor() as cur:
        cur.execute(
            "select tasks.identifier, jobs.payload::text from graphile_worker._private_jobs"
            " as jobs join graphile_worker._private_tasks as tasks on tasks.id = jobs.task_id"
        )
        return [(name, json.loads(payload)) for name, payload in cur.fetchall()]


class OrderViewTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        migrate()  # the zodworker schema in the test database

    def test_an_order_and_its_job_are_written_together(self) -> None:
        answer = self.client.post("/orders", {"item": "lamp"}, content_type="application/json")
        assert answer.status_code == 201
        order_id = answer.json()["order_id"]
        assert jobs() == [("ship", {"order_id": order_id})]

    def test_a_rollback_leaves_neither_the_order_nor_the_job(self) -> None:
        answer = self.client.post(
            "/orders", {"item": "sofa", "out_of_stock": True}, content_type="application/json"
        )
        assert answer.status_code == 409
        assert not Order.objects.exists()
        assert jobs() == []


class WorkerCommandTests(TransactionTestCase):
    def test_manage_py_zodworker_ships_a_committed_order(self) -> None:
        migrate()
        env = {**os.environ, "DATABASE_URL": make_conninfo(database_url())}  # the test DB
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "zodworker", "--concurrency", "2"],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            answer = self.client.post("/orders", {"item": "desk"}, content_type="application/json")
            assert answer.status_code == 201
            order_id = answer.json()["order_id"]
            deadline = time.monotonic() + 60
            while not self.client.get(f"/orders/{order_id}").json()["shipped"]:
                assert time.monotonic() < deadline, "the worker did not ship the order"
                time.sleep(0.1)
            assert jobs() == []  # done and gone
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, output
        assert "worker stopped" in output, output
