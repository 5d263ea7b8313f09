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
