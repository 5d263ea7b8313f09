-- Queries for operators and housekeeping (zodworker.db.admin).

-- name: job_summary
-- Jobs per task and state; dead = out of attempts, running = locked.
select
  tasks.identifier,
  count(*) filter (where jobs.locked_at is null and jobs.attempts < jobs.max_attempts
                   and jobs.run_at <= now()) as runnable,
  count(*) filter (where jobs.locked_at is null and jobs.attempts < jobs.max_attempts
                   and jobs.run_at > now()) as waiting,
  count(*) filter (where jobs.locked_at is not null) as running,
  count(*) filter (where jobs.locked_at is null and jobs.attempts >= jobs.max_attempts) as dead
from :SCHEMA._private_jobs as jobs
inner join :SCHEMA._private_tasks as tasks on tasks.id = jobs.task_id
group by tasks.identifier
order by tasks.identifier;

-- name: cleanup_dead_jobs
-- Permanently failed jobs (out of attempts, not locked) last touched before the TTL,
-- oldest first, at most the given number; removed through complete_jobs (the public API).
-- Parameters: ttl (interval text), max count.
select count(*)
from :SCHEMA.complete_jobs(array(
  select jobs.id
  from :SCHEMA._private_jobs as jobs
  where jobs.attempts >= jobs.max_attempts
    and jobs.locked_at is null
    and jobs.updated_at < now() - %(ttl)s::interval
  order by jobs.updated_at
  limit %(max_count)s
));

-- name: runnable_by_task
-- Jobs ready to run now, per task. The filter matches the partial index of available jobs,
-- so locked and dead rows are never read when the planner uses it.
select tasks.identifier, counts.runnable
from (
  select jobs.task_id, count(*) as runnable
  from :SCHEMA._private_jobs as jobs
  where jobs.is_available = true and jobs.run_at <= now()
  group by jobs.task_id
) as counts
inner join :SCHEMA._private_tasks as tasks on tasks.id = counts.task_id
order by tasks.identifier;

-- fragment: job_state
-- A job's state, derived from its columns: running (locked), failed (out of attempts,
-- permanently failed or cancelled), retrying (failed before, attempts left), scheduled
-- (never tried, run_at in the future), ready (never tried, due).
case
  when jobs.locked_at is not null then 'running'
  when jobs.attempts >= jobs.max_attempts then 'failed'
  when jobs.attempts > 0 then 'retrying'
  when jobs.run_at > now() then 'scheduled'
  else 'ready'
end

-- fragment: jobs_matching
-- The jobs an admin call selects: every filter is optional (null means any). Parameters:
-- task, queue, state, key, flag, text (text), ids (bigint[]). ``text`` is found anywhere in
-- the payload's JSON text, ignoring case (a plain substring: % and _ are not wildcards).
from :SCHEMA._private_jobs as jobs
left join :SCHEMA._private_tasks as tasks on tasks.id = jobs.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
where (%(task)s::text is null or tasks.identifier = %(task)s::text)
  and (%(queue)s::text is null or job_queues.queue_name = %(queue)s::text)
  and (%(key)s::text is null or jobs.key = %(key)s::text)
  and (%(flag)s::text is null or jobs.flags ? %(flag)s::text)
  and (%(text)s::text is null or strpos(lower(jobs.payload::text), lower(%(text)s::text)) > 0)
  and (%(ids)s::bigint[] is null or jobs.id = any(%(ids)s::bigint[]))
  and (%(state)s::text is null or (/*include job_state*/) = %(state)s::text)

-- fragment: not_held
-- Jobs no live worker holds (unlocked, or locked more than 4 hours ago, as graphile-worker's
-- admin functions decide).
(jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')

-- name: admin_list_jobs_newest
-- One page of matching jobs, newest first, after the cursor (an id). Layout of the store's
-- job rows, then the state.
select jobs.*, tasks.identifier, job_queues.queue_name, /*include job_state*/ as state
/*include jobs_matching*/
  and jobs.id < coalesce(%(after)s::bigint, 9223372036854775807)
order by jobs.id desc
limit %(limit)s;

-- name: admin_list_jobs_oldest
select jobs.*, tasks.identifier, job_queues.queue_name, /*include job_state*/ as state
/*include jobs_matching*/
  and jobs.id > coalesce(%(after)s::bigint, 0)
order by jobs.id
limit %(limit)s;

-- name: admin_count_jobs
-- How many jobs match, counting at most bound + 1 rows (more than bound: "over bound").
select count(*) from (
  select 1 /*include jobs_matching*/ limit %(bound)s::bigint + 1
) as bounded;

-- name: admin_retry_jobs
-- Run the matching jobs now with fresh attempts (last_error is kept until the next run).
-- Jobs a live worker holds are skipped. Returns the ids changed.
with matching as (select jobs.id /*include jobs_matching*/)
update :SCHEMA._private_jobs as jobs
set run_at = now(), attempts = 0, updated_at = now()
from matching
where jobs.id = matching.id and /*include not_held*/
returning jobs.id;

-- name: admin_delete_jobs
-- Delete the matching jobs; jobs a live worker holds are skipped. Returns the ids deleted.
with matching as (select jobs.id /*include jobs_matching*/)
delete from :SCHEMA._private_jobs as jobs
using matching
where jobs.id = matching.id and /*include not_held*/
returning jobs.id;

-- name: admin_reschedule_jobs
-- Move the matching jobs to run_at; jobs a live worker holds are skipped.
with matching as (select jobs.id /*include jobs_matching*/)
update :SCHEMA._private_jobs as jobs
set run_at = %(run_at)s::timestamptz, updated_at = now()
from matching
where jobs.id = matching.id and /*include not_held*/
returning jobs.id;

-- name: admin_table_estimate
-- The planner's estimate of the jobs table's rows (no scan). Parameter: the schema's name
-- as a value.
select greatest(c.reltuples, 0)::bigint
from pg_class as c
inner join pg_namespace as n on n.oid = c.relnamespace
where n.nspname = %(schema)s::text and c.relname = '_private_jobs';

-- name: admin_stats_exact
-- Jobs by task, queue and state (a full count: used when the table is small).
select tasks.identifier, job_queues.queue_name, /*include job_state*/ as state, count(*)
from :SCHEMA._private_jobs as jobs
left join :SCHEMA._private_tasks as tasks on tasks.id = jobs.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
group by 1, 2, 3;

-- name: admin_stats_sample
-- The same from a sample of the table's pages (the caller scales the counts by 100 /
-- percent): bounded work on a table of millions. Parameter: percent.
select tasks.identifier, job_queues.queue_name, /*include job_state*/ as state, count(*)
from :SCHEMA._private_jobs as jobs tablesample system (%(percent)s)
left join :SCHEMA._private_tasks as tasks on tasks.id = jobs.task_id
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
group by 1, 2, 3;

-- name: admin_oldest_ready
-- Per named queue (null: jobs without one), when the oldest job that is ready now was due.
select job_queues.queue_name, min(jobs.run_at)
from :SCHEMA._private_jobs as jobs
left join :SCHEMA._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
where jobs.is_available = true and jobs.run_at <= now()
group by 1;

-- name: admin_list_queues
-- Named queues with who holds them and whether they are paused.
select job_queues.queue_name, job_queues.locked_by, job_queues.locked_at,
  paused.paused_at is not null as paused
from :SCHEMA._private_job_queues as job_queues
left join :SCHEMA._zodworker_paused_queues as paused
  on paused.queue_name = job_queues.queue_name
order by job_queues.queue_name;

-- name: admin_list_queues_plain
-- admin_list_queues for a schema without zodworker's tables (only Node graphile-worker has
-- used it): whether a queue is paused is unknown (null).
select job_queues.queue_name, job_queues.locked_by, job_queues.locked_at, null::boolean
from :SCHEMA._private_job_queues as job_queues
order by job_queues.queue_name;

-- name: admin_has_zodworker_tables
-- Whether zodworker's own tables are installed beside graphile-worker's (its migrations
-- table exists). Parameter: schema (a value, quoted here).
select to_regclass(format('%%I._zodworker_migrations', %(schema)s::text)) is not null;

-- name: admin_queue_depths
-- Jobs per named queue in a sample of the table's pages (100 percent: all of them; the
-- caller scales the counts by 100 / percent). Parameter: percent.
select job_queues.queue_name, count(*)
from :SCHEMA._private_jobs as jobs tablesample system (%(percent)s)
inner join :SCHEMA._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id
group by 1;

-- name: admin_list_workers
-- Live zodworker pools (their leases), how many jobs each holds now, and how many it has
-- completed and failed (attempts) since it started, as of its last heartbeat.
select pools.pool_id, pools.hostname, pools.pid, pools.started_at, pools.last_seen,
  pools.lease_expires_at, coalesce(held.running, 0), pools.completed, pools.failed
from :SCHEMA._zodworker_pools as pools
left join (
  select jobs.locked_by, count(*) as running
  from :SCHEMA._private_jobs as jobs
  where jobs.locked_at is not null
  group by jobs.locked_by
) as held on held.locked_by = pools.pool_id
order by pools.started_at;

-- name: admin_known_crontabs
-- The cron items any scheduler (zodworker or Node graphile-worker) has registered, and when
-- each last ran (null: not since it became known).
select crontabs.identifier, crontabs.known_since, crontabs.last_execution
from :SCHEMA._private_known_crontabs as crontabs
order by crontabs.identifier;

-- name: admin_deleted_total
-- Rows ever deleted from the jobs table (completed jobs, by any worker, and deletions), as
-- the statistics system counts them (updated within about a second; reset with its stats),
-- and the database's clock.
select coalesce(sum(stats.n_tup_del), 0)::bigint, now()
from pg_catalog.pg_stat_user_tables as stats
where stats.schemaname = %(schema)s and stats.relname = '_private_jobs';

-- name: admin_create_queue
-- The named queue's row, so that a queue can be paused before its first job exists.
insert into :SCHEMA._private_job_queues (queue_name) values (%(queue)s::text)
on conflict (queue_name) do nothing;

-- name: admin_pause_queue
-- Pause a named queue: no worker, zodworker or graphile-worker, starts a job of it. Its
-- row is locked by 'zodworker:paused', a holder no worker is, as of the year 9999, which
-- upstream's 4-hour sweep never reaches; _zodworker_paused_queues records the pause. A job
-- of the queue that is running now runs on (its end cannot release the queue).
with recorded as (
  insert into :SCHEMA._zodworker_paused_queues (queue_name) values (%(queue)s::text)
  on conflict (queue_name) do nothing
)
update :SCHEMA._private_job_queues as job_queues
set locked_at = '9999-01-01 00:00:00+00', locked_by = 'zodworker:paused'
where job_queues.queue_name = %(queue)s::text
  and job_queues.locked_by is distinct from 'zodworker:paused'
returning job_queues.queue_name;

-- name: admin_resume_queue
-- Resume a paused queue. If a job of it is still running, the queue goes back to that
-- job's holder (so the queue still runs one job at a time), else it is free.
with forgotten as (
  delete from :SCHEMA._zodworker_paused_queues where queue_name = %(queue)s::text
)
update :SCHEMA._private_job_queues as job_queues
set (locked_by, locked_at) = (
  select jobs.locked_by, jobs.locked_at
  from :SCHEMA._private_jobs as jobs
  where jobs.job_queue_id = job_queues.id and jobs.locked_at is not null
  order by jobs.locked_at desc
  limit 1
)
where job_queues.queue_name = %(queue)s::text and job_queues.locked_by = 'zodworker:paused'
returning job_queues.queue_name;

-- name: admin_cancel_jobs
-- admin_cancel_job for every matching job that has not failed for good yet (running ones
-- included: their pools are told). Returns the ids cancelled.
with matching as (
  select jobs.id /*include jobs_matching*/
    and (jobs.attempts < jobs.max_attempts or jobs.locked_at is not null)
),
cancelled as (
  update :SCHEMA._private_jobs as jobs
  set attempts = jobs.max_attempts, key = null, updated_at = now(),
    last_error = case when jobs.locked_at is null then 'cancelled' else jobs.last_error end
  from matching
  where jobs.id = matching.id
  returning jobs.id, jobs.locked_by
),
requested as (
  insert into :SCHEMA._zodworker_cancellations (job_id)
  select cancelled.id from cancelled where cancelled.locked_by is not null
  on conflict do nothing
)
select cancelled.id,
  case when cancelled.locked_by is not null
    then pg_notify('zodworker:cancel', cancelled.id::text) end
from cancelled;

-- name: admin_cancel_job
-- Cancel a job: it never runs again. Its attempts are used up and its key is cleared (a new
-- job may take the key). A job nobody runs is failed for good at once (last_error
-- 'cancelled'); a running one is recorded in _zodworker_cancellations and its zodworker
-- pool is told (NOTIFY "zodworker:cancel"): it aborts the handler and writes a permanent
-- failure. Returns the job's id and holder (null: it was not running).
with cancelled as (
  update :SCHEMA._private_jobs as jobs
  set attempts = jobs.max_attempts, key = null, updated_at = now(),
    last_error = case when jobs.locked_at is null then 'cancelled' else jobs.last_error end
  where jobs.id = %(id)s::bigint
  returning jobs.id, jobs.locked_by
),
requested as (
  insert into :SCHEMA._zodworker_cancellations (job_id)
  select cancelled.id from cancelled where cancelled.locked_by is not null
  on conflict do nothing
)
select cancelled.id, cancelled.locked_by,
  case when cancelled.locked_by is not null
    then pg_notify('zodworker:cancel', cancelled.id::text) end
from cancelled;

-- name: admin_limits
-- Every limit with its numbers (in effect and declared by code), its keys with work, the
-- jobs running under it (slots) and the jobs under it in all, counted up to a bound.
select limits.name, limits.concurrency, limits.rate_count, limits.rate_seconds,
  limits.declared_concurrency, limits.declared_rate_count, limits.declared_rate_seconds,
  limits.overridden, limits.updated_at,
  (select count(*) from :SCHEMA._zodworker_limit_keys as keys
   where keys.limit_name = limits.name)::int,
  (select count(*) from :SCHEMA._zodworker_limit_slots as slots
   where slots.limit_name = limits.name)::int,
  (select count(*) from (
     select 1 from :SCHEMA._zodworker_limited_jobs as limited
     where limited.limit_name = limits.name limit %(bound)s
   ) as under)::int
from :SCHEMA._zodworker_limits as limits
order by limits.name;

-- name: admin_set_limit
-- An operator's numbers for a limit: they hold (overridden) until reset, whatever code
-- declares meanwhile; each is changed only when its set_ flag is true. Tells every pool.
with changed as (
  insert into :SCHEMA._zodworker_limits as limits
    (name, concurrency, rate_count, rate_seconds, overridden)
  values (%(name)s, %(concurrency)s, %(rate_count)s, %(rate_seconds)s, true)
  on conflict (name) do update
  set concurrency = case when %(set_concurrency)s then excluded.concurrency
      else limits.concurrency end,
    rate_count = case when %(set_rate)s then excluded.rate_count else limits.rate_count end,
    rate_seconds = case when %(set_rate)s then excluded.rate_seconds
      else limits.rate_seconds end,
    overridden = true,
    updated_at = now()
  returning limits.name
)
select pg_notify('zodworker:limits', '') from changed;

-- name: admin_reset_limit
-- Back to the numbers code declared. Returns the limit's name when it exists.
with reset as (
  update :SCHEMA._zodworker_limits as limits
  set concurrency = limits.declared_concurrency, rate_count = limits.declared_rate_count,
    rate_seconds = limits.declared_rate_seconds, overridden = false, updated_at = now()
  where limits.name = %(name)s
  returning limits.name
)
select reset.name, pg_notify('zodworker:limits', '') from reset;

-- name: admin_has_limits
-- Whether zodworker's limit tables are installed. Parameter: schema (a value, quoted here).
select to_regclass(format('%%I._zodworker_limits', %(schema)s::text)) is not null;
