-- Results and history (sql/zodworker/000007.sql): written by the worker pool with a job's
-- outcome, read by result waiters (zodworker.results), pruned by the pools' maintenance.

-- fragment: history_columns
job_id, task_identifier, queue_name, key, outcome, payload, output, last_error, attempts,
max_attempts, created_at, started_at, finished_at, duration

-- fragment: history_replace
on conflict (job_id) do update set
  task_identifier = excluded.task_identifier, queue_name = excluded.queue_name,
  key = excluded.key, outcome = excluded.outcome, payload = excluded.payload,
  output = excluded.output, last_error = excluded.last_error, attempts = excluded.attempts,
  max_attempts = excluded.max_attempts, created_at = excluded.created_at,
  started_at = excluded.started_at, finished_at = excluded.finished_at,
  duration = excluded.duration

-- name: complete_recorded_jobs
-- complete_locked_jobs for jobs whose task keeps results: in the same statement their
-- history rows are written (outcome 'success', the handler's output) and waiters are told
-- (NOTIFY "zodworker:result" with the ids, comma-separated, at most 500 per notification).
-- Fenced by the lease the jobs were fetched under (owner), releasing their queues.
-- Parameters: ids, outputs (JSON text or null, one each), durations (seconds), queue_ids,
-- owner.
with done as (
  delete from :SCHEMA._private_jobs as jobs
  where jobs.id = any(%(ids)s::bigint[]) and jobs.locked_by = %(owner)s::text
  returning jobs.*
),
recorded as (
  insert into :SCHEMA._zodworker_job_history as history (/*include history_columns*/)
  select done.id, tasks.identifier, queues.queue_name, done.key, 'success', done.payload,
    results.output::jsonb, null, done.attempts, done.max_attempts, done.created_at,
    done.locked_at, now(), results.duration
  from done
  inner join unnest(%(ids)s::bigint[], %(outputs)s::text[], %(durations)s::float8[])
    as results (id, output, duration) on results.id = done.id
  inner join :SCHEMA._private_tasks as tasks on tasks.id = done.task_id
  left join :SCHEMA._private_job_queues as queues on queues.id = done.job_queue_id
  /*include history_replace*/
  returning history.job_id
),
released as (
  update :SCHEMA._private_job_queues as job_queues
  set locked_by = null, locked_at = null
  where job_queues.id = any(%(queue_ids)s::int[]) and job_queues.locked_by = %(owner)s::text
)
select pg_notify('zodworker:result', string_agg(chunks.job_id::text, ','))
from (select job_id, (row_number() over () - 1) / 500 as chunk from recorded) as chunks
group by chunks.chunk;

-- name: record_failures
-- Sent right after fail_jobs, in the same round trip: history rows for the jobs of tasks
-- that keep results whose failure was final (attempts used up, or PermanentFailure), and
-- waiters told. fail_jobs unlocked them and they cannot be fetched again, so "unlocked with
-- its attempts used up" is the fence (a permanent failure sets attempts to max_attempts, so
-- the attempts made come from the pool). Parameters: ids, outcomes ('failed' or
-- 'cancelled'), attempts, durations (one each).
with recorded as (
  insert into :SCHEMA._zodworker_job_history as history (/*include history_columns*/)
  select jobs.id, tasks.identifier, queues.queue_name, jobs.key, failures.outcome,
    jobs.payload, null, jobs.last_error, failures.attempts, jobs.max_attempts,
    jobs.created_at, null, now(), failures.duration
  from unnest(
    %(ids)s::bigint[], %(outcomes)s::text[], %(attempts)s::int[], %(durations)s::float8[]
  ) as failures (id, outcome, attempts, duration)
  inner join :SCHEMA._private_jobs as jobs on jobs.id = failures.id
  inner join :SCHEMA._private_tasks as tasks on tasks.id = jobs.task_id
  left join :SCHEMA._private_job_queues as queues on queues.id = jobs.job_queue_id
  where jobs.attempts >= jobs.max_attempts and jobs.locked_by is null
  /*include history_replace*/
  returning history.job_id
)
select pg_notify('zodworker:result', string_agg(chunks.job_id::text, ','))
from (select job_id, (row_number() over () - 1) / 500 as chunk from recorded) as chunks
group by chunks.chunk;

-- name: result_states
-- Where each of the given jobs stands, for result waiters: its history row (if any) and
-- its job row (if it is still there). Parameters: ids.
select wanted.id, coalesce(history.task_identifier, tasks.identifier), history.outcome,
  history.output::text, history.last_error,
  history.attempts, jobs.attempts, jobs.max_attempts, jobs.last_error,
  jobs.locked_by is not null
from unnest(%(ids)s::bigint[]) as wanted (id)
left join :SCHEMA._zodworker_job_history as history on history.job_id = wanted.id
left join :SCHEMA._private_jobs as jobs on jobs.id = wanted.id
left join :SCHEMA._private_tasks as tasks on tasks.id = jobs.task_id;

-- name: history_cutoff
-- The finished_at before which history rows are pruned: older than the age (seconds), or
-- beyond the newest keep rows; null when neither applies. Parameters: age, keep (each may
-- be null).
select greatest(
  now() - make_interval(secs => %(age)s::float8),
  case when %(keep)s::bigint is not null then (
    select history.finished_at from :SCHEMA._zodworker_job_history as history
    order by history.finished_at desc offset %(keep)s::bigint limit 1
  ) end
);

-- name: prune_history
-- Delete up to batch history rows finished at or before the cutoff, oldest first, skipping
-- rows another pruner holds (short transactions: no long locks). Returns how many.
-- Parameters: before, batch.
with doomed as (
  select history.job_id from :SCHEMA._zodworker_job_history as history
  where history.finished_at <= %(before)s::timestamptz
  order by history.finished_at
  limit %(batch)s::int
  for update skip locked
),
deleted as (
  delete from :SCHEMA._zodworker_job_history as history
  using doomed where history.job_id = doomed.job_id
  returning 1
)
select count(*) from deleted;

-- name: history
-- History rows, newest job first (keyset pages: before = the last id seen), optionally of
-- one task, one outcome, or one job. Parameters: task, outcome, job_id, before, limit.
select /*include history_columns*/
from :SCHEMA._zodworker_job_history as history
where (%(task)s::text is null or history.task_identifier = %(task)s::text)
  and (%(outcome)s::text is null or history.outcome = %(outcome)s::text)
  and (%(job_id)s::bigint is null or history.job_id = %(job_id)s::bigint)
  and (%(before)s::bigint is null or history.job_id < %(before)s::bigint)
order by history.job_id desc
limit %(limit)s::int;
