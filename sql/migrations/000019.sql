-- Revision 19 baseline.
--
-- Creates, in one transaction, every object graphile-worker's schema has at revision 19,
-- on a database that has none of them. The migrator records revisions 1..19 in
-- :SCHEMA.migrations inside the same transaction, so a database built here is
-- indistinguishable (to graphile-worker and to us) from one that walked the 19 steps.
--
-- Object names are part of the contract, including the ones that carry a history
-- suffix (jobs_pkey1, jobs_id_seq1, job_queues_pkey1, jobs_key_key1): tools that compare
-- schemas, and graphile-worker's own later migrations, refer to them by name.
--
-- add_job and add_jobs are defined by 000020.sql, which always runs right after this.

create type :SCHEMA.job_spec as (
  identifier text,
  payload json,
  queue_name text,
  run_at timestamptz,
  max_attempts smallint,
  job_key text,
  priority smallint,
  flags text[]
);

-- Task identifiers, interned: jobs refer to them by id.
create table :SCHEMA._private_tasks (
  id integer generated always as identity (sequence name :SCHEMA.tasks_id_seq),
  identifier text not null,
  constraint tasks_pkey primary key (id),
  constraint tasks_identifier_key unique (identifier),
  constraint tasks_identifier_check check (length(identifier) <= 128)
);

-- Named queues. A queue row is locked (locked_at/locked_by) while one of its jobs runs,
-- which is what makes a named queue run one job at a time across the cluster.
create table :SCHEMA._private_job_queues (
  id integer generated always as identity (sequence name :SCHEMA.job_queues_id_seq),
  queue_name text not null,
  locked_at timestamptz,
  locked_by text,
  is_available boolean generated always as (locked_at is null) stored not null,
  constraint job_queues_pkey1 primary key (id),
  constraint job_queues_queue_name_key unique (queue_name),
  constraint job_queues_queue_name_check check (length(queue_name) <= 128)
);

-- The jobs. Column order matters: functions return this row type and clients read it.
--
-- States a row moves through (derived from its columns, never stored separately):
--   waiting     locked_at is null, attempts < max_attempts, run_at > now()
--   runnable    locked_at is null, attempts < max_attempts, run_at <= now()
--   running     locked_at is not null (attempts was incremented when it was locked)
--   failed      locked_at is null, last_error set, attempts < max_attempts: retries at run_at
--   dead        attempts >= max_attempts: kept for inspection, never fetched again
--   (completed jobs are deleted)
create table :SCHEMA._private_jobs (
  id bigint generated always as identity (sequence name :SCHEMA.jobs_id_seq1),
  job_queue_id integer,
  task_id integer not null,
  payload json default '{}'::json not null,
  priority smallint default 0 not null,
  run_at timestamptz default now() not null,
  attempts smallint default 0 not null,
  max_attempts smallint default 25 not null,
  last_error text,
  created_at timestamptz default now() not null,
  updated_at timestamptz default now() not null,
  key text,
  locked_at timestamptz,
  locked_by text,
  revision integer default 0 not null,
  flags jsonb,
  is_available boolean
    generated always as (locked_at is null and attempts < max_attempts) stored not null,
  constraint jobs_pkey1 primary key (id),
  constraint jobs_key_key1 unique (key),
  constraint jobs_key_check check (length(key) > 0 and length(key) <= 512),
  constraint jobs_max_attempts_check check (max_attempts >= 1)
);

-- The fetch path: runnable jobs in (priority, run_at) order, covering the columns the
-- fetch needs; the second index serves workers that only look at jobs without a queue.
create index jobs_main_index on :SCHEMA._private_jobs
  using btree (priority, run_at) include (id, task_id, job_queue_id)
  where is_available = true;
create index jobs_no_queue_index on :SCHEMA._private_jobs
  using btree (priority, run_at) include (id, task_id)
  where is_available = true and job_queue_id is null;

-- Cron bookkeeping: one row per cron item identifier, the last occurrence that was added.
create table :SCHEMA._private_known_crontabs (
  identifier text not null,
  known_since timestamptz not null,
  last_execution timestamptz,
  constraint known_crontabs_pkey primary key (identifier)
);

-- The private tables are not for direct use by other roles.
alter table :SCHEMA._private_tasks enable row level security;
alter table :SCHEMA._private_job_queues enable row level security;
alter table :SCHEMA._private_jobs enable row level security;
alter table :SCHEMA._private_known_crontabs enable row level security;

-- The readable face of the jobs table.
create view :SCHEMA.jobs as
  select
    jobs.id,
    job_queues.queue_name,
    tasks.identifier as task_identifier,
    jobs.priority,
    jobs.run_at,
    jobs.attempts,
    jobs.max_attempts,
    jobs.last_error,
    jobs.created_at,
    jobs.updated_at,
    jobs.key,
    jobs.locked_at,
    jobs.locked_by,
    jobs.revision,
    jobs.flags
  from :SCHEMA._private_jobs as jobs
  inner join :SCHEMA._private_tasks as tasks on tasks.id = jobs.task_id
  left join :SCHEMA._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id;

-- Deletes the given jobs, except ones a live worker holds (a lock younger than 4 hours).
create function :SCHEMA.complete_jobs(job_ids bigint[])
returns setof :SCHEMA._private_jobs
language sql
as $$
  delete from :SCHEMA._private_jobs as jobs
  where jobs.id = any(job_ids)
    and (jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')
  returning *;
$$;

-- Marks the given jobs as out of attempts with a reason, except ones a live worker holds.
create function :SCHEMA.permanently_fail_jobs(job_ids bigint[], error_message text default null)
returns setof :SCHEMA._private_jobs
language sql
as $$
  update :SCHEMA._private_jobs as jobs
  set last_error = coalesce(error_message, 'Manually marked as failed'),
      attempts = jobs.max_attempts,
      updated_at = now()
  where jobs.id = any(job_ids)
    and (jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')
  returning *;
$$;

-- Changes when / how the given jobs run; a null argument leaves that column as it is.
create function :SCHEMA.reschedule_jobs(
  job_ids bigint[],
  run_at timestamptz default null,
  priority integer default null,
  attempts integer default null,
  max_attempts integer default null
)
returns setof :SCHEMA._private_jobs
language sql
as $$
  update :SCHEMA._private_jobs as jobs
  set run_at = coalesce(reschedule_jobs.run_at, jobs.run_at),
      priority = coalesce(reschedule_jobs.priority::smallint, jobs.priority),
      attempts = coalesce(reschedule_jobs.attempts::smallint, jobs.attempts),
      max_attempts = coalesce(reschedule_jobs.max_attempts::smallint, jobs.max_attempts),
      updated_at = now()
  where jobs.id = any(job_ids)
    and (jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')
  returning *;
$$;

-- Releases every job and queue lock held by the given worker ids (workers known dead).
create function :SCHEMA.force_unlock_workers(worker_ids text[])
returns void
language sql
as $$
  update :SCHEMA._private_jobs as jobs
  set locked_at = null, locked_by = null
  where jobs.locked_by = any(worker_ids);

  update :SCHEMA._private_job_queues as job_queues
  set locked_at = null, locked_by = null
  where job_queues.locked_by = any(worker_ids);
$$;

-- Removes the job with this key. A job no live worker holds is deleted; one that is
-- running loses its key and its remaining attempts, so it finishes but never retries.
-- Returns the affected row, or null when no job has the key.
create function :SCHEMA.remove_job(job_key text)
returns :SCHEMA._private_jobs
language plpgsql
strict
as $$
declare
  v_job :SCHEMA._private_jobs;
begin
  delete from :SCHEMA._private_jobs as jobs
  where jobs.key = remove_job.job_key
    and (jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')
  returning * into v_job;

  if v_job.id is not null then
    -- count -1: listeners learn the queue shrank; nothing new to fetch.
    perform pg_notify('jobs:insert', format('{"r":%s,"count":-1}', random()));
    return v_job;
  end if;

  update :SCHEMA._private_jobs as jobs
  set key = null,
      attempts = jobs.max_attempts,
      updated_at = now()
  where jobs.key = remove_job.job_key
  returning * into v_job;

  return v_job;
end;
$$;
