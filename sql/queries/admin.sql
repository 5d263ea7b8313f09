-- Read-only queries for the command line and operators.

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
