-- The latency floor of benchmarks/runs.py: what claiming a job costs with nothing but
-- LISTEN and one statement. {schema} is filled in as a quoted identifier.

-- name: claim
with next_job as (
  select jobs.id
  from {schema}._private_jobs as jobs
  where jobs.is_available = true and jobs.run_at <= now()
  order by jobs.priority, jobs.run_at, jobs.id
  limit 1
  for update skip locked
)
update {schema}._private_jobs as jobs
set locked_at = now(), locked_by = 'raw-floor', attempts = jobs.attempts + 1
from next_job
where jobs.id = next_job.id
returning jobs.id, jobs.payload;

-- name: complete
delete from {schema}._private_jobs where id = %(id)s;
