-- Runtime queries of zodworker.store. Each returns jobs as one JSON text column, the row
-- of _private_jobs plus its task identifier and queue name, decoded by msgspec in one step.
--
-- Names are looked up with scalar sub-selects, not joins: the statement's snapshot predates
-- task and queue rows that add_job(s) creates during the statement, so a join would drop
-- the new job's row. Such names come back empty/null and the store resolves them afterwards
-- (query resolve_names), which happens only the first time a name is used.
-- Positional parameters (%s) are bound by psycopg; :SCHEMA is the quoted schema name.

-- name: add_job
select row_to_json(j)::text
from (
  select added.*,
    coalesce((select t.identifier from :SCHEMA._private_tasks as t where t.id = added.task_id), '')
      as task_identifier,
    (select q.queue_name from :SCHEMA._private_job_queues as q where q.id = added.job_queue_id)
      as queue_name
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
  where added.id is not null
) as j;

-- name: add_jobs
-- Parameters: a JSON array of objects named like job_spec's attributes; preserve run_at.
select row_to_json(j)::text
from (
  select added.*,
    coalesce((select t.identifier from :SCHEMA._private_tasks as t where t.id = added.task_id), '')
      as task_identifier,
    (select q.queue_name from :SCHEMA._private_job_queues as q where q.id = added.job_queue_id)
      as queue_name
  from :SCHEMA.add_jobs(
    array(select spec from json_populate_recordset(null:::SCHEMA.job_spec, %s::json) as spec),
    %s::boolean
  ) as added
  where added.id is not null
) as j;

-- name: remove_job
select row_to_json(j)::text
from (
  select removed.*,
    coalesce((select t.identifier from :SCHEMA._private_tasks as t where t.id = removed.task_id), '')
      as task_identifier,
    (select q.queue_name from :SCHEMA._private_job_queues as q where q.id = removed.job_queue_id)
      as queue_name
  from :SCHEMA.remove_job(%s::text) as removed
  where removed.id is not null
) as j;

-- name: complete_jobs
select row_to_json(j)::text
from (
  select done.*,
    coalesce((select t.identifier from :SCHEMA._private_tasks as t where t.id = done.task_id), '')
      as task_identifier,
    (select q.queue_name from :SCHEMA._private_job_queues as q where q.id = done.job_queue_id)
      as queue_name
  from :SCHEMA.complete_jobs(%s::bigint[]) as done
  where done.id is not null
) as j;

-- name: permanently_fail_jobs
select row_to_json(j)::text
from (
  select failed.*,
    coalesce((select t.identifier from :SCHEMA._private_tasks as t where t.id = failed.task_id), '')
      as task_identifier,
    (select q.queue_name from :SCHEMA._private_job_queues as q where q.id = failed.job_queue_id)
      as queue_name
  from :SCHEMA.permanently_fail_jobs(%s::bigint[], %s::text) as failed
  where failed.id is not null
) as j;

-- name: reschedule_jobs
select row_to_json(j)::text
from (
  select moved.*,
    coalesce((select t.identifier from :SCHEMA._private_tasks as t where t.id = moved.task_id), '')
      as task_identifier,
    (select q.queue_name from :SCHEMA._private_job_queues as q where q.id = moved.job_queue_id)
      as queue_name
  from :SCHEMA.reschedule_jobs(
    %s::bigint[],
    run_at => %s::timestamptz,
    priority => %s::integer,
    attempts => %s::integer,
    max_attempts => %s::integer
  ) as moved
  where moved.id is not null
) as j;

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
select row_to_json(j)::text
from (
  select jobs.*,
    coalesce((select t.identifier from :SCHEMA._private_tasks as t where t.id = jobs.task_id), '')
      as task_identifier,
    (select q.queue_name from :SCHEMA._private_job_queues as q where q.id = jobs.job_queue_id)
      as queue_name
  from :SCHEMA._private_jobs as jobs
  where jobs.id = %s
) as j;
