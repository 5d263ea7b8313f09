-- Revision 20: add_jobs and add_job.
--
-- Behaviour (the contract other languages rely on):
-- * Task identifiers and queue names are registered on first use. Only missing ones are
--   inserted, so identity values are not burnt by conflicting inserts.
-- * A spec without a key inserts a job.
-- * A spec with a key whose job is available (unlocked, attempts left) updates that row in
--   place: task, queue, payload, max_attempts, priority, flags overwritten; attempts 0;
--   last_error null; revision + 1; run_at replaced, unless job_key_preserve_run_at is set
--   and the job has not been attempted yet. Two JSON-array payloads are concatenated
--   (batch jobs accumulate).
-- * A spec with a key whose job is locked or out of attempts detaches the key from that
--   job (which then never runs again once it finishes) and inserts a new job.
--
-- Unlike earlier implementations, add_jobs returns exactly one row per spec even when a
-- worker locks the keyed job between our two statements: the affected specs go round
-- the loop again (the old job now counts as unavailable, so it loses its key and a new job
-- is inserted). add_job therefore never returns null for a valid call.

create or replace function :SCHEMA.add_jobs(
  specs :SCHEMA.job_spec[],
  job_key_preserve_run_at boolean default false
)
returns setof :SCHEMA._private_jobs
language plpgsql
as $$
declare
  v_pending :SCHEMA.job_spec[] := specs;
  v_written integer;
begin
  insert into :SCHEMA._private_tasks (identifier)
  select distinct spec.identifier
  from unnest(specs) as spec
  where not exists (
    select 1 from :SCHEMA._private_tasks as known where known.identifier = spec.identifier
  )
  on conflict do nothing;

  insert into :SCHEMA._private_job_queues (queue_name)
  select distinct spec.queue_name
  from unnest(specs) as spec
  where spec.queue_name is not null
    and not exists (
      select 1 from :SCHEMA._private_job_queues as known where known.queue_name = spec.queue_name
    )
  on conflict do nothing;

  if cardinality(specs) > 0 then
    -- Delivered on commit. The count may overstate new jobs (keyed updates count too).
    perform pg_notify(
      'jobs:insert', format('{"r":%s,"count":%s}', random(), cardinality(specs))
    );
  end if;

  loop
    update :SCHEMA._private_jobs as jobs
    set key = null,
        attempts = jobs.max_attempts,
        updated_at = now()
    from unnest(v_pending) as spec
    where spec.job_key is not null
      and jobs.key = spec.job_key
      and not jobs.is_available;

    return query
    insert into :SCHEMA._private_jobs as jobs (
      job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags
    )
    select
      job_queues.id,
      tasks.id,
      coalesce(spec.payload, '{}'::json),
      coalesce(spec.run_at, now()),
      coalesce(spec.max_attempts, 25),
      spec.job_key,
      coalesce(spec.priority, 0),
      (select jsonb_object_agg(flag, true) from unnest(spec.flags) as flag)
    from unnest(v_pending) as spec
    inner join :SCHEMA._private_tasks as tasks on tasks.identifier = spec.identifier
    left join :SCHEMA._private_job_queues as job_queues on job_queues.queue_name = spec.queue_name
    on conflict (key) do update
    set job_queue_id = excluded.job_queue_id,
        task_id = excluded.task_id,
        payload = case
          when json_typeof(jobs.payload) = 'array' and json_typeof(excluded.payload) = 'array'
            then (jobs.payload::jsonb || excluded.payload::jsonb)::json
          else excluded.payload
        end,
        max_attempts = excluded.max_attempts,
        run_at = case
          when job_key_preserve_run_at is true and jobs.attempts = 0 then jobs.run_at
          else excluded.run_at
        end,
        priority = excluded.priority,
        revision = jobs.revision + 1,
        flags = excluded.flags,
        attempts = 0,
        last_error = null,
        updated_at = now()
    where jobs.locked_at is null
    returning *;

    get diagnostics v_written = row_count;
    exit when v_written >= cardinality(v_pending);

    -- Some keyed spec met a row that a worker locked after our update ran. Only those
    -- specs go round again; every other spec has its row already.
    select array_agg(spec) into v_pending
    from unnest(v_pending) as spec
    where spec.job_key is not null
      and exists (
        select 1 from :SCHEMA._private_jobs as jobs
        where jobs.key = spec.job_key and jobs.locked_at is not null
      );
    exit when v_pending is null;
  end loop;
end;
$$;

create or replace function :SCHEMA.add_job(
  identifier text,
  payload json default null,
  queue_name text default null,
  run_at timestamptz default null,
  max_attempts integer default null,
  job_key text default null,
  priority integer default null,
  flags text[] default null,
  job_key_mode text default 'replace'
)
returns :SCHEMA._private_jobs
language plpgsql
as $$
declare
  v_job :SCHEMA._private_jobs;
begin
  -- The key mode only matters when there is a key: without one every mode inserts.
  if add_job.job_key is null
    or add_job.job_key_mode is null
    or add_job.job_key_mode in ('replace', 'preserve_run_at')
  then
    select * into v_job
    from :SCHEMA.add_jobs(
      array[row(
        add_job.identifier, add_job.payload, add_job.queue_name, add_job.run_at,
        add_job.max_attempts::smallint, add_job.job_key, add_job.priority::smallint,
        add_job.flags
      ):::SCHEMA.job_spec],
      add_job.job_key_mode = 'preserve_run_at'
    );
    return v_job;
  end if;

  if add_job.job_key_mode <> 'unsafe_dedupe' then
    raise exception 'Invalid job_key_mode value, expected ''replace'', ''preserve_run_at'' or ''unsafe_dedupe''.'
      using errcode = 'GWBKM';
  end if;

  -- unsafe_dedupe: the first job with this key wins, whatever its state (even running or
  -- permanently failed); later calls only bump its revision and get it back.
  insert into :SCHEMA._private_tasks (identifier)
  select add_job.identifier
  where not exists (
    select 1 from :SCHEMA._private_tasks as known where known.identifier = add_job.identifier
  )
  on conflict do nothing;

  if add_job.queue_name is not null then
    insert into :SCHEMA._private_job_queues (queue_name)
    select add_job.queue_name
    where not exists (
      select 1 from :SCHEMA._private_job_queues as known where known.queue_name = add_job.queue_name
    )
    on conflict do nothing;
  end if;

  insert into :SCHEMA._private_jobs as jobs (
    job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags
  )
  select
    job_queues.id,
    tasks.id,
    coalesce(add_job.payload, '{}'::json),
    coalesce(add_job.run_at, now()),
    coalesce(add_job.max_attempts::smallint, 25::smallint),
    add_job.job_key,
    coalesce(add_job.priority::smallint, 0::smallint),
    (select jsonb_object_agg(flag, true) from unnest(add_job.flags) as flag)
  from :SCHEMA._private_tasks as tasks
  left join :SCHEMA._private_job_queues as job_queues on job_queues.queue_name = add_job.queue_name
  where tasks.identifier = add_job.identifier
  on conflict (key) do update
  set revision = jobs.revision + 1,
      updated_at = now()
  returning * into v_job;

  if v_job.revision = 0 then
    perform pg_notify('jobs:insert', format('{"r":%s,"count":1}', random()));
  end if;
  return v_job;
end;
$$;
