-- Runtime queries of the producer store (zodworker.db.store). Each returns jobs as the
-- columns of _private_jobs in table order, then the task identifier and the queue name
-- (zodworker.db.rows builds a Job from exactly that layout).
--
-- Names are joined with LEFT joins: the statement's snapshot predates task and queue rows
-- that add_job(s) creates during the statement, so an inner join would drop the new job's
-- row. Such names come back null and the store resolves them afterwards (resolve_names),
-- which happens only the first time a name is used.
-- Positional parameters (%s) are bound by psycopg; :SCHEMA is the quoted schema name.

-- name: add_job
select added.*, tasks.identifier, job_queues.queue_name
from :SCHEMA.add_job(
  identifier => %s::text,
  payload => %s::json,
  queue_name => %s::text,
  run_at => %s::timestamptz,
  max_attempts => %s::integer,
  job_key => %s::text,
  priority => %s::integer,
  flags => %s::text[],
  job_key_mode => %s::text
) as added
left join :SCHEMA._private_tasks as tasks on tasks.id = added.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = added.job_queue_id
where added.id is not null;

-- name: add_job_lean
-- add_job's common case in one insert: no job key, a task (and a queue, when one is named)
-- that exists already. The row and the NOTIFY are those add_job produces (add_jobs with
-- one spec; the notification is sent for the inserted row). No row back when the task or
-- the queue is new: the store then runs add_job, which creates them. The row comes back
-- without its payload and names (null): they are what the store sent and matched, filled
-- in by it (sending them back cost ~50 us of a ~430 us add here). Parameters:
-- identifier, queue_name, payload, run_at, max_attempts, priority, flags, queue_name.
with task as (
  select tasks.id, tasks.identifier
  from :SCHEMA._private_tasks as tasks
  where tasks.identifier = %s::text
),
queue as (
  select job_queues.id, job_queues.queue_name
  from :SCHEMA._private_job_queues as job_queues
  where job_queues.queue_name = %s::text
),
added as (
  insert into :SCHEMA._private_jobs (
    job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags
  )
  select
    queue.id,
    task.id,
    coalesce(%s::json, '{}'::json),
    coalesce(%s::timestamptz, now()),
    coalesce(%s::smallint, 25::smallint),
    null,
    coalesce(%s::smallint, 0::smallint),
    (select jsonb_object_agg(flag, true) from unnest(%s::text[]) as flag)
  from task
  left join queue on true
  where %s::text is null or queue.id is not null
  returning
    id, job_queue_id, task_id, null::json, priority, run_at, attempts, max_attempts,
    last_error, created_at, updated_at, key, locked_at, locked_by, revision, flags,
    is_available
),
notified as (
  select pg_notify('jobs:insert', '{"r":' || random()::text || ',"count":1}') from added
)
select added.*, null::text, null::text
from added
cross join (select count(*) from notified) as sent;

-- name: add_jobs
-- Parameters: a JSON array of objects named like job_spec's attributes; preserve run_at.
select added.*, tasks.identifier, job_queues.queue_name
from :SCHEMA.add_jobs(
  array(select spec from json_populate_recordset(null:::SCHEMA.job_spec, %s::json) as spec),
  %s::boolean
) as added
left join :SCHEMA._private_tasks as tasks on tasks.id = added.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = added.job_queue_id
where added.id is not null;

-- name: add_jobs_lean
-- add_jobs' common case in one statement: no spec has a job key, and every task (and named
-- queue) exists already. The rows, their ids (in the specs' order) and the NOTIFY are those
-- add_jobs produces, without its upserts of tasks and queues and its keyed-update pass. No
-- row back when a task or queue is new: the store then runs add_jobs, which creates them.
-- The names come back null: they are the specs' own, filled in by the store, which orders
-- the rows by id (joining the names back and sorting cost ~1.7 ms per 1,000 rows here).
-- Parameter: a JSON array of objects named like job_spec's attributes, none with job_key.
with spec as materialized (
  select
    given.ordinality,
    given.payload,
    given.run_at,
    given.max_attempts,
    given.priority,
    given.flags,
    given.queue_name,
    tasks.id as task_id,
    job_queues.id as job_queue_id
  from json_populate_recordset(null:::SCHEMA.job_spec, %s::json) with ordinality as given
  left join :SCHEMA._private_tasks as tasks on tasks.identifier = given.identifier
  left join :SCHEMA._private_job_queues as job_queues
    on job_queues.queue_name = given.queue_name
),
known as (
  select count(*) as specs
  from spec
  having count(*) > 0
    and bool_and(spec.task_id is not null and (spec.queue_name is null or spec.job_queue_id is not null))
),
added as (
  insert into :SCHEMA._private_jobs (
    job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags
  )
  select
    spec.job_queue_id,
    spec.task_id,
    coalesce(spec.payload, '{}'::json),
    coalesce(spec.run_at, now()),
    coalesce(spec.max_attempts, 25),
    null,
    coalesce(spec.priority, 0),
    (select jsonb_object_agg(flag, true) from unnest(spec.flags) as flag)
  from spec
  cross join known
  order by spec.ordinality
  returning *
),
notified as (
  select pg_notify('jobs:insert', format('{"r":%%s,"count":%%s}', random(), known.specs))
  from known
)
select added.*, null::text, null::text
from added
cross join (select count(*) from notified) as sent;

-- name: remove_job
select removed.*, tasks.identifier, job_queues.queue_name
from :SCHEMA.remove_job(%s::text) as removed
left join :SCHEMA._private_tasks as tasks on tasks.id = removed.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = removed.job_queue_id
where removed.id is not null;

-- name: complete_jobs
select done.*, tasks.identifier, job_queues.queue_name
from :SCHEMA.complete_jobs(%s::bigint[]) as done
left join :SCHEMA._private_tasks as tasks on tasks.id = done.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = done.job_queue_id
where done.id is not null;

-- name: permanently_fail_jobs
select failed.*, tasks.identifier, job_queues.queue_name
from :SCHEMA.permanently_fail_jobs(%s::bigint[], %s::text) as failed
left join :SCHEMA._private_tasks as tasks on tasks.id = failed.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = failed.job_queue_id
where failed.id is not null;

-- name: reschedule_jobs
select moved.*, tasks.identifier, job_queues.queue_name
from :SCHEMA.reschedule_jobs(
  %s::bigint[],
  run_at => %s::timestamptz,
  priority => %s::integer,
  attempts => %s::integer,
  max_attempts => %s::integer
) as moved
left join :SCHEMA._private_tasks as tasks on tasks.id = moved.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = moved.job_queue_id
where moved.id is not null;

-- name: force_unlock_workers
select :SCHEMA.force_unlock_workers(%s::text[]);

-- name: resolve_names
select
  (select array_agg(t.identifier order by ord) from unnest(%s::int[]) with ordinality as x(id, ord)
     left join :SCHEMA._private_tasks as t on t.id = x.id),
  (select array_agg(q.queue_name order by ord) from unnest(%s::int[]) with ordinality as x(id, ord)
     left join :SCHEMA._private_job_queues as q on q.id = x.id);

-- name: get_job
-- One job by id, from the jobs table (tests, admin tools).
select jobs.*, tasks.identifier, job_queues.queue_name
from :SCHEMA._private_jobs as jobs
left join :SCHEMA._private_tasks as tasks on tasks.id = jobs.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
where jobs.id = %s;

-- name: record_limits
-- Record which limits and keys the jobs just added are under (sql/zodworker/000006.sql),
-- in the transaction that added them: a key row for every key, the limit's declared numbers
-- when it has no row yet, and for each job exactly the given limits (a replaced keyed job
-- drops limits it is no longer under). Tells every pool ("zodworker:limits").
-- Parameters: per (job, limit): job ids, positions, limit names, keys; per limit: names,
-- concurrency, rate counts, rate seconds.
with refs as (
  select given.job_id, given.position, given.limit_name, given.limit_key
  from unnest(%(job_ids)s::bigint[], %(positions)s::smallint[], %(names)s::text[],
    %(keys)s::text[]) as given(job_id, position, limit_name, limit_key)
),
declared as (
  select :SCHEMA._zodworker_declare_limits(
    %(limit_names)s::text[], %(concurrency)s::int[], %(rate_counts)s::int[],
    %(rate_seconds)s::float8[], false
  ) as written
),
keyed as (
  insert into :SCHEMA._zodworker_limit_keys (limit_name, limit_key)
  select distinct refs.limit_name, refs.limit_key from refs
  on conflict do nothing
),
recorded as (
  insert into :SCHEMA._zodworker_limited_jobs
    (job_id, limit_name, limit_key, position, priority, run_at)
  select refs.job_id, refs.limit_name, refs.limit_key, refs.position, jobs.priority, jobs.run_at
  from refs
  inner join :SCHEMA._private_jobs as jobs on jobs.id = refs.job_id
  on conflict (job_id, limit_name) do update
  set limit_key = excluded.limit_key, position = excluded.position,
    priority = excluded.priority, run_at = excluded.run_at
),
dropped as (
  delete from :SCHEMA._zodworker_limited_jobs as limited
  where limited.job_id = any(%(job_ids)s::bigint[])
    and not exists (
      select 1 from refs
      where refs.job_id = limited.job_id and refs.limit_name = limited.limit_name
    )
)
select pg_notify('zodworker:limits', '') from declared;

-- name: declare_limits
-- The numbers code declares for its limits. An operator's setting (overridden) holds until
-- it is reset; otherwise the declared numbers take effect. Tells every pool of a change.
-- Parameters: names, concurrency, rate counts, rate seconds.
select pg_notify('zodworker:limits', '')
where :SCHEMA._zodworker_declare_limits(
  %(limit_names)s::text[], %(concurrency)s::int[], %(rate_counts)s::int[],
  %(rate_seconds)s::float8[], true
) > 0;
