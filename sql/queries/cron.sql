-- Runtime queries of the cron scheduler (zodworker.db.cron, used by zodworker.cron).

-- name: cron_known
-- The cron identifiers this schema knows and when each last fired.
select known.identifier, known.known_since, known.last_execution
from :SCHEMA._private_known_crontabs as known
where known.identifier = any(%(identifiers)s::text[]);

-- name: cron_register
-- Remember identifiers seen for the first time; they are not backfilled.
insert into :SCHEMA._private_known_crontabs as known (identifier, known_since)
select identifier, %(now)s::timestamptz from unnest(%(identifiers)s::text[]) as identifier
on conflict do nothing;

-- name: cron_schedule
-- Add the jobs due at one instant, exactly once across every scheduler sharing the schema:
-- each item's row in _private_known_crontabs is moved forward to the instant, and only the
-- statement that moved it gets the row back and adds the job (in the same transaction).
-- Parameters: the instant, a JSON array of
-- {identifier, task, payload, queue_name, max_attempts, priority, job_key, job_key_mode}.
with specs as (
  select
    entries.position,
    entries.spec->>'identifier' as identifier,
    entries.spec->>'task' as task,
    entries.spec->'payload' as payload,
    entries.spec->>'queue_name' as queue_name,
    (entries.spec->>'max_attempts')::integer as max_attempts,
    (entries.spec->>'priority')::integer as priority,
    entries.spec->>'job_key' as job_key,
    coalesce(entries.spec->>'job_key_mode', 'replace') as job_key_mode
  from json_array_elements(%(specs)s::json) with ordinality as entries (spec, position)
),
claimed as (
  insert into :SCHEMA._private_known_crontabs as known (identifier, known_since, last_execution)
  select specs.identifier, %(ts)s::timestamptz, %(ts)s::timestamptz from specs
  on conflict (identifier) do update set last_execution = excluded.last_execution
  where known.last_execution is null or known.last_execution < excluded.last_execution
  returning known.identifier
)
select specs.identifier, (
  :SCHEMA.add_job(
    specs.task,
    specs.payload,
    specs.queue_name,
    %(ts)s::timestamptz,
    specs.max_attempts,
    specs.job_key,
    specs.priority,
    null,
    specs.job_key_mode
  )
).id
from specs
inner join claimed on claimed.identifier = specs.identifier
order by specs.position;
