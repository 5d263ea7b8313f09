-- Runtime queries of the worker pool (zodworker.db.worker_store). Jobs are locked with the
-- pool's id as locked_by, like graphile-worker, so admin functions and Node workers agree.

-- name: task_ids
-- Register the identifiers this pool can run (missing ones only), then return their ids.
with wanted as (select unnest(%s::text[]) as identifier),
inserted as (
  insert into :SCHEMA._private_tasks (identifier)
  select wanted.identifier from wanted
  where not exists (
    select 1 from :SCHEMA._private_tasks as known where known.identifier = wanted.identifier
  )
  on conflict do nothing
  returning id, identifier
)
select id, identifier from inserted
union
select tasks.id, tasks.identifier
from :SCHEMA._private_tasks as tasks inner join wanted using (identifier);

-- name: get_jobs
-- Lock up to N runnable jobs: available, due, of a task this pool runs, none of the
-- forbidden flags, and no queue or a queue nobody holds. At most one job per named queue
-- per batch: the queue row is locked with its job, so a queue runs one job at a time
-- across the cluster. Nothing is locked unless the pool's lease (pool_id) exists and has
-- not expired. Parameters: pool id (the lease), task ids, forbidden flags, N.
with lease as (
  select 1
  from :SCHEMA._zodworker_pools as pools
  where pools.pool_id = %(pool_id)s::text and pools.lease_expires_at > now()
),
available_queues as (
  select job_queues.id
  from :SCHEMA._private_job_queues as job_queues
  where exists (select 1 from lease) and job_queues.is_available = true
  for update skip locked
),
candidates as (
  select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at
  from :SCHEMA._private_jobs as jobs
  where exists (select 1 from lease)
    and jobs.is_available = true
    and jobs.run_at <= now()
    and jobs.task_id = any(%(task_ids)s::int[])
    and (jobs.job_queue_id is null or jobs.job_queue_id in (select id from available_queues))
    and ((jobs.flags ?| %(forbidden)s::text[]) is not true)
  order by jobs.priority, jobs.run_at
  limit %(n)s
  for update of jobs skip locked
),
picked as (
  select distinct on (coalesce(candidates.job_queue_id::bigint, -candidates.id)) candidates.id,
    candidates.job_queue_id
  from candidates
  order by coalesce(candidates.job_queue_id::bigint, -candidates.id), candidates.priority,
    candidates.run_at
),
locked_queues as (
  update :SCHEMA._private_job_queues as job_queues
  set locked_by = %(pool_id)s::text, locked_at = now()
  from picked
  where job_queues.id = picked.job_queue_id
),
locked as (
  update :SCHEMA._private_jobs as jobs
  set attempts = jobs.attempts + 1, locked_by = %(pool_id)s::text, locked_at = now()
  -- by id list, not a join: the planner misjudges picked's size and would hash the table
  where jobs.id = any(array(select picked.id from picked))
  returning jobs.*
)
-- in the order the pool should start them; the layout of every job-returning query (the
-- task identifier comes from the pool's own id -> name map, see zodworker.db.rows)
select locked.*, null::text as task_identifier, names.queue_name
from locked
left join :SCHEMA._private_job_queues as names on names.id = locked.job_queue_id
order by locked.priority, locked.run_at, locked.id;

-- name: complete_locked_jobs
-- Delete finished jobs and release their named queues, fenced by the lease the jobs were
-- fetched under (owner): a job another pool has taken over is left alone. The queues come
-- from the pool's own copy of the jobs, so they are released even when a row is gone.
-- Parameters: ids, queue_ids, owner.
with done as (
  delete from :SCHEMA._private_jobs as jobs
  where jobs.id = any(%(ids)s::bigint[]) and jobs.locked_by = %(owner)s::text
)
update :SCHEMA._private_job_queues as job_queues
set locked_by = null, locked_at = null
where job_queues.id = any(%(queue_ids)s::int[]) and job_queues.locked_by = %(owner)s::text;

-- name: fail_jobs
-- Record each failure and schedule the retry: exp(least(attempts, 10)) seconds after
-- the later of now and the job's run_at. A replacement payload (batch jobs: only the
-- failed elements) overrides the stored one; "permanent" uses up the attempts (no retry).
-- Fenced and releasing queues as complete_locked_jobs.
-- Parameters: JSON array of {"id", "message", "payload"?, "permanent"?}, queue_ids, owner.
with failures as (
  select (f->>'id')::bigint as id, f->>'message' as message, f->'payload' as payload,
    coalesce((f->>'permanent')::boolean, false) as permanent
  from json_array_elements(%(failures)s::json) as f
),
failed as (
  update :SCHEMA._private_jobs as jobs
  set last_error = failures.message,
      run_at = greatest(now(), jobs.run_at) + exp(least(jobs.attempts, 10)) * interval '1 second',
      locked_by = null,
      locked_at = null,
      payload = coalesce(failures.payload, jobs.payload),
      attempts = case when failures.permanent then jobs.max_attempts else jobs.attempts end,
      updated_at = now()
  from failures
  where jobs.id = failures.id and jobs.locked_by = %(owner)s::text
)
update :SCHEMA._private_job_queues as job_queues
set locked_by = null, locked_at = null
where job_queues.id = any(%(queue_ids)s::int[]) and job_queues.locked_by = %(owner)s::text;

-- name: return_jobs
-- Give back jobs this pool fetched but never started (shutdown, local queue expiry):
-- unlock them and take back the attempt the fetch counted. Fenced and releasing queues as
-- complete_locked_jobs. Parameters: ids, queue_ids, owner.
with returned as (
  update :SCHEMA._private_jobs as jobs
  set attempts = greatest(0, jobs.attempts - 1), locked_by = null, locked_at = null
  where jobs.id = any(%(ids)s::bigint[]) and jobs.locked_by = %(owner)s::text
)
update :SCHEMA._private_job_queues as job_queues
set locked_by = null, locked_at = null
where job_queues.id = any(%(queue_ids)s::int[]) and job_queues.locked_by = %(owner)s::text;

-- name: snooze_jobs
-- A handler said "not yet" (zodworker.errors.Snooze): run each job again its seconds from
-- now, giving back the attempt the fetch counted; no error is recorded. Fenced and
-- releasing queues as complete_locked_jobs. Parameters: ids, seconds (one each),
-- queue_ids, owner.
with snoozed as (
  update :SCHEMA._private_jobs as jobs
  set run_at = now() + make_interval(secs => later.seconds),
      attempts = greatest(0, jobs.attempts - 1),
      locked_by = null,
      locked_at = null,
      updated_at = now()
  from unnest(%(ids)s::bigint[], %(seconds)s::float8[]) as later(id, seconds)
  where jobs.id = later.id and jobs.locked_by = %(owner)s::text
)
update :SCHEMA._private_job_queues as job_queues
set locked_by = null, locked_at = null
where job_queues.id = any(%(queue_ids)s::int[]) and job_queues.locked_by = %(owner)s::text;

-- name: return_unknown_jobs
-- After a fetch whose answer was lost with its connection (it may have committed): give back
-- the jobs locked under the lease (owner) that the pool does not know about, attempt
-- returned and queues released. Runs only then, so the scan by locked_by is rare.
-- Parameters: owner, known (the ids the pool holds, runs or is writing outcomes for).
with returned as (
  update :SCHEMA._private_jobs as jobs
  set attempts = greatest(0, jobs.attempts - 1), locked_by = null, locked_at = null
  where jobs.locked_by = %(owner)s::text and jobs.id <> all(%(known)s::bigint[])
  returning jobs.id, jobs.job_queue_id
),
released as (
  update :SCHEMA._private_job_queues as job_queues
  set locked_by = null, locked_at = null
  from returned
  where job_queues.id = returned.job_queue_id and job_queues.locked_by = %(owner)s::text
),
freed_slots as (
  delete from :SCHEMA._zodworker_limit_slots as slots
  where slots.job_id in (select id from returned) and slots.owner = %(owner)s::text
  returning pg_notify('zodworker:limits', '')
)
select returned.id from returned;

-- name: reset_stale_locks
-- graphile-worker's sweep: locks older than 4 hours are abandoned.
with jobs_reset as (
  update :SCHEMA._private_jobs as jobs
  set locked_at = null, locked_by = null, run_at = greatest(jobs.run_at, now())
  where jobs.locked_at < now() - interval '4 hours'
)
update :SCHEMA._private_job_queues as job_queues
set locked_at = null, locked_by = null
where job_queues.locked_at < now() - interval '4 hours';

-- name: register_pool
-- Start a lease: the pool's row, expiring lease_seconds from now unless renewed.
insert into :SCHEMA._zodworker_pools
  (pool_id, hostname, pid, lease_expires_at, lease_seconds, heartbeat_seconds, tasks)
values (
  %(pool_id)s, %(hostname)s, %(pid)s, now() + make_interval(secs => %(lease)s), %(lease)s,
  %(heartbeat)s, %(tasks)s::text[]
)
on conflict (pool_id) do update
set last_seen = now(), lease_expires_at = excluded.lease_expires_at,
  lease_seconds = excluded.lease_seconds, heartbeat_seconds = excluded.heartbeat_seconds,
  tasks = excluded.tasks;

-- name: set_pool_tasks
-- The tasks a pool runs changed (watch mode); no row yet (starting): register_pool sets them.
update :SCHEMA._zodworker_pools set tasks = %(tasks)s::text[] where pool_id = %(pool_id)s;

-- name: heartbeat
-- Renew a lease by its own length. No row back: the lease is gone (another pool presumed
-- this one dead and released what it held) or has already expired (a reaper may act at
-- any moment); either way the pool must treat it as lost.
-- It also records the pool's job counts (completed, failed attempts) for the dashboard.
update :SCHEMA._zodworker_pools as pools
set last_seen = now(),
    lease_expires_at = now() + make_interval(secs => pools.lease_seconds),
    completed = %(completed)s,
    failed = %(failed)s
where pools.pool_id = %(pool_id)s and pools.lease_expires_at > now()
returning pools.pool_id;

-- name: unregister_pool
-- End a lease: forget the row and release every job and queue lock and every limit slot
-- still held under it. Returns the ids of the released jobs.
with gone as (
  delete from :SCHEMA._zodworker_pools where pool_id = %(pool_id)s
),
freed_slots as (
  delete from :SCHEMA._zodworker_limit_slots as slots
  where slots.owner = %(pool_id)s
  returning pg_notify('zodworker:limits', '')
),
released_queues as (
  update :SCHEMA._private_job_queues as job_queues
  set locked_at = null, locked_by = null
  where job_queues.locked_by = %(pool_id)s
)
update :SCHEMA._private_jobs as jobs
set locked_at = null, locked_by = null
where jobs.locked_by = %(pool_id)s
returning jobs.id;

-- name: reap_dead_pools
-- Pools whose lease has expired (by their own lease length; rows of older zodworkers: 30 s
-- after their last heartbeat) are presumed dead: forget them and release every job and
-- queue lock they held. The job and queue scans run only when some pool died (one-time
-- filter). Their limit slots are freed too. Returns the ids of the released jobs.
with dead as (
  delete from :SCHEMA._zodworker_pools as pools
  where case
    when pools.lease_seconds is null then pools.last_seen < now() - interval '30 seconds'
    else pools.lease_expires_at < now()
  end
  returning pools.pool_id
),
released_queues as (
  update :SCHEMA._private_job_queues as job_queues
  set locked_at = null, locked_by = null
  where exists (select 1 from dead) and job_queues.locked_by in (select pool_id from dead)
),
freed_slots as (
  delete from :SCHEMA._zodworker_limit_slots as slots
  where exists (select 1 from dead) and slots.owner in (select pool_id from dead)
  returning pg_notify('zodworker:limits', '')
)
update :SCHEMA._private_jobs as jobs
set locked_at = null, locked_by = null
where exists (select 1 from dead) and jobs.locked_by in (select pool_id from dead)
returning jobs.id;

-- name: cancellations_for
-- Which of the jobs this pool runs an operator cancelled (the fallback when a NOTIFY was
-- missed); also forgets requests whose job is no longer running anywhere.
with forgotten as (
  delete from :SCHEMA._zodworker_cancellations as requests
  where not exists (
    select 1 from :SCHEMA._private_jobs as jobs
    where jobs.id = requests.job_id and jobs.locked_at is not null
  )
)
select requests.job_id
from :SCHEMA._zodworker_cancellations as requests
where requests.job_id = any(%(ids)s::bigint[]);

-- name: reapply_pauses
-- A paused queue whose lock someone cleared (force_unlock_workers, a manual update) is
-- paused again, unless a job of it is running (it is paused again after that job).
update :SCHEMA._private_job_queues as job_queues
set locked_at = '9999-01-01 00:00:00+00', locked_by = 'zodworker:paused'
from :SCHEMA._zodworker_paused_queues as paused
where job_queues.queue_name = paused.queue_name and job_queues.locked_at is null;

-- name: live_pools
-- How many zodworker pools hold a live lease on this schema (this one included): a pool
-- fetches ahead only while it is the only one (see zodworker.worker.local_queue).
select count(*) from :SCHEMA._zodworker_pools as pools where pools.lease_expires_at > now();

-- name: unserved_tasks
-- Tasks with jobs ready for over %(waited)s seconds that no live zodworker pool runs,
-- looking at no more than %(limit)s such jobs (bounded work on a big backlog). Pools from
-- before the tasks column (null) count as running everything. A graphile-worker (Node)
-- worker has no row here, so the caller's warning says it may run them.
with overdue as (
  select jobs.task_id, jobs.run_at
  from :SCHEMA._private_jobs as jobs
  where jobs.is_available = true and jobs.run_at <= now() - make_interval(secs => %(waited)s)
  limit %(limit)s
)
select tasks.identifier, count(*)::int, min(overdue.run_at)
from overdue
inner join :SCHEMA._private_tasks as tasks on tasks.id = overdue.task_id
where not exists (
  select 1 from :SCHEMA._zodworker_pools as pools
  where pools.lease_expires_at > now()
    and (pools.tasks is null or tasks.identifier = any(pools.tasks))
)
group by tasks.identifier
order by tasks.identifier;

-- name: get_limited_jobs
-- get_jobs for limited jobs (flag 'zw:limited'): keys least recently served first, every
-- limit a job is under must have room (see sql/zodworker/000006.sql). In the order taken.
-- Parameters: pool id (the lease), task ids, forbidden flags, N.
select locked.*, null::text as task_identifier, (
  select names.queue_name from :SCHEMA._private_job_queues as names
  where names.id = locked.job_queue_id
) as queue_name
from :SCHEMA._zodworker_get_limited_jobs(
  %(pool_id)s::text, %(task_ids)s::int[], %(forbidden)s::text[], %(n)s::int, null
) as locked;

-- name: release_limited
-- After the outcome of limited jobs was written (complete, fail or return): free the
-- concurrency slots they held under owner, forget the limits of jobs that are gone, and
-- keep the order columns of jobs that will run again (a retry's new run_at). Tells every
-- pool there is room ("zodworker:limits"). Parameters: ids, owner.
with released as (
  delete from :SCHEMA._zodworker_limit_slots as slots
  where slots.job_id = any(%(ids)s::bigint[]) and slots.owner = %(owner)s::text
  returning slots.job_id
),
forgotten as (
  delete from :SCHEMA._zodworker_limited_jobs as limited
  where limited.job_id = any(%(ids)s::bigint[])
    and not exists (select 1 from :SCHEMA._private_jobs as jobs where jobs.id = limited.job_id)
),
reordered as (
  update :SCHEMA._zodworker_limited_jobs as limited
  set run_at = jobs.run_at, priority = jobs.priority
  from :SCHEMA._private_jobs as jobs
  where limited.job_id = any(%(ids)s::bigint[]) and jobs.id = limited.job_id
    and (limited.run_at, limited.priority) is distinct from (jobs.run_at, jobs.priority)
)
select pg_notify('zodworker:limits', '') where exists (select 1 from released);

-- name: limits_next_room
-- Seconds until a rate-limited key that is full now has room again (its oldest start that
-- keeps it full leaves the window), or null: when a pool should look again without waiting
-- for a notification.
with windows as (
  select starts.started_at, limits.rate_count, limits.rate_seconds,
    row_number() over keyed as nth, count(*) over keyed as held
  from :SCHEMA._zodworker_limit_starts as starts
  inner join :SCHEMA._zodworker_limits as limits on limits.name = starts.limit_name
  where limits.rate_count is not null
    and starts.started_at > clock_timestamp() - make_interval(secs => limits.rate_seconds)
  window keyed as (partition by starts.limit_name, starts.limit_key order by starts.started_at
    rows between unbounded preceding and unbounded following)
)
select extract(epoch from min(windows.started_at + make_interval(secs => windows.rate_seconds))
  - clock_timestamp())::float8
from windows
where windows.nth = windows.held - windows.rate_count + 1;

-- name: reconcile_limits
-- The limits' frequent housekeeping (bounded by the jobs running and the rate windows): free
-- slots whose job is no longer locked by the slot's owner (an operator's
-- force_unlock_workers, the 4-hour sweep, a Node worker, remove_job), and drop starts older
-- than their window (a day for a limit without a row). Returns the slots freed.
with freed as (
  delete from :SCHEMA._zodworker_limit_slots as slots
  where not exists (
    select 1 from :SCHEMA._private_jobs as jobs
    where jobs.id = slots.job_id and jobs.locked_by = slots.owner
  )
  returning slots.job_id
),
expired as (
  delete from :SCHEMA._zodworker_limit_starts as starts
  where starts.started_at < now() - coalesce(
    (select make_interval(secs => limits.rate_seconds)
     from :SCHEMA._zodworker_limits as limits where limits.name = starts.limit_name),
    interval '1 day'
  )
)
select count(*)::int from freed;

-- name: tidy_limits
-- The limits' rare housekeeping (it reads every limited job): forget limits of jobs that
-- are gone or no longer flagged (deleted or replaced by other means than a zodworker pool),
-- give a key row back to every key with limited jobs (one lost in a race with pruning),
-- and drop key rows idle for an hour with nothing left.
with forgotten as (
  delete from :SCHEMA._zodworker_limited_jobs as limited
  where not exists (
    select 1 from :SCHEMA._private_jobs as jobs
    where jobs.id = limited.job_id and jobs.flags ? 'zw:limited'
  )
),
healed as (
  insert into :SCHEMA._zodworker_limit_keys (limit_name, limit_key)
  select distinct limited.limit_name, limited.limit_key
  from :SCHEMA._zodworker_limited_jobs as limited
  on conflict do nothing
),
pruned as (
  delete from :SCHEMA._zodworker_limit_keys as keys
  where coalesce(keys.served_at, keys.created_at) < now() - interval '1 hour'
    and not exists (
      select 1 from :SCHEMA._zodworker_limited_jobs as limited
      where limited.limit_name = keys.limit_name and limited.limit_key = keys.limit_key
    )
    and not exists (
      select 1 from :SCHEMA._zodworker_limit_slots as slots
      where slots.limit_name = keys.limit_name and slots.limit_key = keys.limit_key
    )
)
select 1;
