"""The store for synchronous applications: add and remove jobs on a psycopg ``Connection``.

Same SQL, validation and guarantees as :class:`zodworker.Store`, for code without an event
loop (Django, Flask, scripts). Statements run on the caller's connection and commit with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from . import sqlfiles
from .errors import DatabaseError, JobSpecError
from .job import DEFAULT_SCHEMA, Job, JobKeyMode, JobSpec, check_spec
from .store import _ADD_RETRIES, _job_row, add_job_params, add_jobs_payload, translate_errors

__all__ = ["SyncStore"]


class SyncStore:
    """Adding and removing jobs from synchronous code, on one graphile-worker schema."""

    __slots__ = ("_schema",)

    def __init__(self, schema: str = DEFAULT_SCHEMA) -> None:
        if not isinstance(schema, str) or not schema:
            raise JobSpecError("schema", "must be a non-empty string")
        self._schema = schema

    def _rows(
        self, conn: psycopg.Connection[Any], name: str, params: Sequence[object]
    ) -> list[Job]:
        with conn.cursor(row_factory=_job_row, binary=True) as cur, translate_errors():
            cur.execute(sqlfiles.query(name, self._schema), params)
            jobs: list[Job] = cur.fetchall()
        unresolved = [
            job
            for job in jobs
            if not job.task_identifier or (job.job_queue_id is not None and job.queue_name is None)
        ]
        if unresolved:
            with conn.cursor(row_factory=tuple_row) as cur, translate_errors():
                cur.execute(
                    sqlfiles.query("resolve_names", self._schema),
                    ([j.task_id for j in unresolved], [j.job_queue_id for j in unresolved]),
                )
                row = cur.fetchone()
            assert row is not None
            for job, identifier, queue_name in zip(unresolved, row[0], row[1], strict=True):
                job.task_identifier = identifier
                job.queue_name = queue_name
        return jobs

    def add_job(
        self,
        conn: psycopg.Connection[Any],
        identifier: str,
        payload: Any = None,
        *,
        queue_name: str | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        job_key: str | None = None,
        job_key_mode: JobKeyMode | None = None,
        priority: int | None = None,
        flags: Sequence[str] | None = None,
    ) -> Job:
        """Add one job on ``conn`` (see :meth:`zodworker.Store.add_job`)."""
        spec = JobSpec(
            identifier=identifier,
            payload=payload,
            queue_name=queue_name,
            run_at=run_at,
            max_attempts=max_attempts,
            job_key=job_key,
            priority=priority,
            flags=flags,
        )
        return self.add_spec(conn, spec, job_key_mode)

    def add_spec(
        self, conn: psycopg.Connection[Any], spec: JobSpec, job_key_mode: JobKeyMode | None = None
    ) -> Job:
        """:meth:`add_job` for a ready-made :class:`JobSpec`."""
        params = add_job_params(spec, job_key_mode)
        for _ in range(_ADD_RETRIES):
            jobs = self._rows(conn, "add_job", params)
            if jobs:
                return jobs[0]
        raise DatabaseError(f"add_job for key {spec.job_key!r} kept racing with workers")

    def add_jobs(
        self,
        conn: psycopg.Connection[Any],
        specs: Sequence[JobSpec],
        *,
        job_key_preserve_run_at: bool = False,
    ) -> list[Job]:
        """Add many jobs in one statement (see :meth:`zodworker.Store.add_jobs`)."""
        encoded = add_jobs_payload(specs)
        if encoded is None:
            return []
        return self._rows(conn, "add_jobs", (encoded, bool(job_key_preserve_run_at)))

    def remove_job(self, conn: psycopg.Connection[Any], job_key: str) -> Job | None:
        """Remove the job with ``job_key`` (see :meth:`zodworker.Store.remove_job`)."""
        if job_key is None:
            raise JobSpecError("job_key", "is required")
        check_spec(JobSpec(identifier="-", job_key=job_key))
        jobs = self._rows(conn, "remove_job", (job_key,))
        return jobs[0] if jobs else None
