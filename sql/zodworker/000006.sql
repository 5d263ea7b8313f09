-- Flow control: concurrency and rate limits per named limit and key, enforced at fetch by
-- every zodworker pool, with keys served least recently served first (fair across tenants).
--
-- A limited job is an ordinary row of _private_jobs carrying the flag 'zw:limited' (so a
-- plain fetch, which forbids that flag, never takes it; a Node graphile-worker does unless
-- it is given forbiddenFlags ['zw:limited']). Which limits and keys it is under is recorded
-- here in the same statement that adds it. Its first limit orders it (fairness); every limit
-- it is under must have room when it is taken.
--
--   _zodworker_limits        a limit's numbers: as declared by code, or as set by an operator
--   _zodworker_limit_keys    one row per (limit, key) with work: the lock that serialises
--                            decisions for the key, and when it was last served
--   _zodworker_limited_jobs  which (limit, key) each waiting or running limited job is under
--   _zodworker_limit_slots   one row per running job and limit: what concurrency counts
--   _zodworker_limit_starts  when jobs of a rate-limited key started: the sliding window
--
-- Room for a key is decided only while its _zodworker_limit_keys row is locked (FOR UPDATE
-- SKIP LOCKED, so fetches never wait on each other), and counted by a statement that starts
-- after the lock was taken (a plpgsql statement has a fresh snapshot), so two pools never
-- both see the last free slot. Slots are released by the statements that write a job's
-- outcome, by lease reaping, and by a reconciler for anything else that unlocks a job.

create table :SCHEMA._zodworker_limits (
  name text primary key,
  concurrency integer check (concurrency >= 0),
  rate_count integer check (rate_count >= 1),
  rate_seconds double precision check (rate_seconds > 0),
  declared_concurrency integer,
  declared_rate_count integer,
  declared_rate_seconds double precision,
  overridden boolean not null default false,
  updated_at timestamptz not null default now(),
  check ((rate_count is null) = (rate_seconds is null))
);

create table :SCHEMA._zodworker_limit_keys (
  limit_name text not null,
  limit_key text not null,
  created_at timestamptz not null default now(),
  served_at timestamptz,
  primary key (limit_name, limit_key)
);

create table :SCHEMA._zodworker_limited_jobs (
  job_id bigint not null,
  limit_name text not null,
  limit_key text not null,
  position smallint not null,
  priority smallint not null,
  run_at timestamptz not null,
  primary key (job_id, limit_name)
);
create index _zodworker_limited_jobs_order on :SCHEMA._zodworker_limited_jobs
  (limit_name, limit_key, priority, run_at, job_id) where position = 0;
create index _zodworker_limited_jobs_keys on :SCHEMA._zodworker_limited_jobs
  (limit_name, limit_key);

create table :SCHEMA._zodworker_limit_slots (
  job_id bigint not null,
  limit_name text not null,
  limit_key text not null,
  owner text not null,
  started_at timestamptz not null,
  primary key (job_id, limit_name)
);
create index _zodworker_limit_slots_keys on :SCHEMA._zodworker_limit_slots
  (limit_name, limit_key);

create table :SCHEMA._zodworker_limit_starts (
  limit_name text not null,
  limit_key text not null,
  started_at timestamptz not null
);
create index _zodworker_limit_starts_keys on :SCHEMA._zodworker_limit_starts
  (limit_name, limit_key, started_at);

alter table :SCHEMA._zodworker_limits enable row level security;
alter table :SCHEMA._zodworker_limit_keys enable row level security;
alter table :SCHEMA._zodworker_limited_jobs enable row level security;
alter table :SCHEMA._zodworker_limit_slots enable row level security;
alter table :SCHEMA._zodworker_limit_starts enable row level security;

-- Write the numbers code declares for limits: a new limit takes them; an existing one
-- takes them only with p_update (and keeps an operator's numbers while overridden).
-- Returns how many limits were written.
create function :SCHEMA._zodworker_declare_limits(
  p_names text[], p_concurrency integer[], p_rate_counts integer[],
  p_rate_seconds double precision[], p_update boolean
) returns integer
language sql volatile
as $$
  with written as (
    insert into :SCHEMA._zodworker_limits as limits (
      name, concurrency, rate_count, rate_seconds,
      declared_concurrency, declared_rate_count, declared_rate_seconds
    )
    select given.name, given.concurrency, given.rate_count, given.rate_seconds,
      given.concurrency, given.rate_count, given.rate_seconds
    from unnest(p_names, p_concurrency, p_rate_counts, p_rate_seconds)
      as given(name, concurrency, rate_count, rate_seconds)
    on conflict (name) do update
    set declared_concurrency = excluded.declared_concurrency,
      declared_rate_count = excluded.declared_rate_count,
      declared_rate_seconds = excluded.declared_rate_seconds,
      concurrency = case when limits.overridden then limits.concurrency
        else excluded.concurrency end,
      rate_count = case when limits.overridden then limits.rate_count
        else excluded.rate_count end,
      rate_seconds = case when limits.overridden then limits.rate_seconds
        else excluded.rate_seconds end,
      updated_at = now()
    where p_update
      and (limits.declared_concurrency, limits.declared_rate_count, limits.declared_rate_seconds)
      is distinct from
      (excluded.declared_concurrency, excluded.declared_rate_count, excluded.declared_rate_seconds)
    returning 1
  )
  select count(*)::integer from written
$$;

-- How many more jobs of (limit, key) may start at "at": the free concurrency slots and the
-- starts left in the rate window (at - rate_seconds, at], whichever is fewer. A limit
-- without a row or without numbers only orders its keys fairly (room without bound).
create function :SCHEMA._zodworker_limit_room(
  p_name text, p_key text, p_at timestamptz
) returns integer
language plpgsql volatile
set plan_cache_mode = force_generic_plan  -- index lookups: no need to plan each call
as $$
declare
  v_limit record;
  v_room bigint := 2147483647;
begin
  select limits.concurrency, limits.rate_count, limits.rate_seconds into v_limit
  from :SCHEMA._zodworker_limits as limits
  where limits.name = p_name;
  if not found then
    return v_room;
  end if;
  if v_limit.concurrency is not null then
    v_room := v_limit.concurrency - (
      select count(*) from :SCHEMA._zodworker_limit_slots as slots
      where slots.limit_name = p_name and slots.limit_key = p_key
    );
  end if;
  if v_limit.rate_count is not null and v_room > 0 then
    v_room := least(v_room, v_limit.rate_count - (
      select count(*) from :SCHEMA._zodworker_limit_starts as starts
      where starts.limit_name = p_name and starts.limit_key = p_key
        and starts.started_at > p_at - make_interval(secs => v_limit.rate_seconds)
    ));
  end if;
  return v_room;
end;
$$;

-- Take up to p_most jobs of (p_name, p_key), whose row the caller has locked and found room
-- for: by priority, run_at, id; each only while every other limit it is under has room (its
-- key row locked first, SKIP LOCKED) and its named queue is free. Locks each job as
-- get_jobs does (attempts + 1, locked_by) and records a slot per limit and a start per
-- rate-limited limit at p_at.
create function :SCHEMA._zodworker_take_limited(
  p_pool_id text, p_task_ids integer[], p_forbidden text[], p_name text, p_key text,
  p_most integer, p_at timestamptz
) returns setof :SCHEMA._private_jobs
language plpgsql volatile
set plan_cache_mode = force_generic_plan  -- index lookups: no need to plan each call
as $$
declare
  v_job record;
  v_other record;
  v_row :SCHEMA._private_jobs;
  v_taken integer := 0;
  v_ok boolean;
begin
  for v_job in
    select jobs.id, jobs.job_queue_id
    from :SCHEMA._zodworker_limited_jobs as limited
    inner join :SCHEMA._private_jobs as jobs on jobs.id = limited.job_id
    where limited.limit_name = p_name and limited.limit_key = p_key
      and limited.position = 0
      and jobs.is_available = true
      and jobs.run_at <= p_at
      and jobs.task_id = any(p_task_ids)
      and jobs.flags ? 'zw:limited'
      and ((jobs.flags ?| p_forbidden) is not true)
    order by limited.priority, limited.run_at, limited.job_id
    limit p_most * 2 + 2
    for update of jobs skip locked
  loop
    exit when v_taken >= p_most;
    v_ok := true;
    for v_other in
      select limited.limit_name, limited.limit_key
      from :SCHEMA._zodworker_limited_jobs as limited
      where limited.job_id = v_job.id and limited.position > 0
      order by limited.position
    loop
      perform 1 from :SCHEMA._zodworker_limit_keys as keys
      where keys.limit_name = v_other.limit_name and keys.limit_key = v_other.limit_key
      for update skip locked;
      if not found
        or :SCHEMA._zodworker_limit_room(v_other.limit_name, v_other.limit_key, p_at) <= 0
      then
        v_ok := false;
        exit;
      end if;
    end loop;
    continue when not v_ok;
    if v_job.job_queue_id is not null then
      perform 1 from :SCHEMA._private_job_queues as job_queues
      where job_queues.id = v_job.job_queue_id and job_queues.is_available = true
      for update skip locked;
      continue when not found;
      update :SCHEMA._private_job_queues as job_queues
      set locked_by = p_pool_id, locked_at = p_at
      where job_queues.id = v_job.job_queue_id;
    end if;
    update :SCHEMA._private_jobs as jobs
    set attempts = jobs.attempts + 1, locked_by = p_pool_id, locked_at = p_at
    where jobs.id = v_job.id
    returning jobs.* into v_row;
    insert into :SCHEMA._zodworker_limit_slots (job_id, limit_name, limit_key, owner, started_at)
    select limited.job_id, limited.limit_name, limited.limit_key, p_pool_id, p_at
    from :SCHEMA._zodworker_limited_jobs as limited
    where limited.job_id = v_job.id
    on conflict (job_id, limit_name) do update
    set owner = excluded.owner, started_at = excluded.started_at,
      limit_key = excluded.limit_key;
    insert into :SCHEMA._zodworker_limit_starts (limit_name, limit_key, started_at)
    select limited.limit_name, limited.limit_key, p_at
    from :SCHEMA._zodworker_limited_jobs as limited
    inner join :SCHEMA._zodworker_limits as limits on limits.name = limited.limit_name
    where limited.job_id = v_job.id and limits.rate_count is not null;
    v_taken := v_taken + 1;
    return next v_row;
  end loop;
  return;
end;
$$;

-- Lock up to p_n limited jobs for the pool p_pool_id (its lease must be live), as get_jobs
-- does for unlimited ones, in two rounds: first one job from each key with work and room,
-- least recently served first (round robin: n idle slots go to n keys), then the keys
-- served in the first round, in the same order, take what room is left. p_at fixes the
-- clock (tests); null reads it after each key's lock is taken, so recorded starts are in
-- order. A fetch that got all it asked for tells the other pools ("zodworker:limits")
-- there may be more.
create function :SCHEMA._zodworker_get_limited_jobs(
  p_pool_id text, p_task_ids integer[], p_forbidden text[], p_n integer, p_at timestamptz
) returns setof :SCHEMA._private_jobs
language plpgsql volatile
set plan_cache_mode = force_generic_plan  -- index lookups: no need to plan each call
as $$
declare
  v_key record;
  v_row :SCHEMA._private_jobs;
  v_at timestamptz;
  v_room integer;
  v_got integer;
  v_taken integer := 0;
  v_names text[] := '{}';
  v_keys text[] := '{}';
  v_next integer := 1;
begin
  if p_n <= 0 or not exists (
    select 1 from :SCHEMA._zodworker_pools as pools
    where pools.pool_id = p_pool_id and pools.lease_expires_at > coalesce(p_at, now())
  ) then
    return;
  end if;
  for v_key in
    select keys.limit_name, keys.limit_key
    from :SCHEMA._zodworker_limit_keys as keys
    left join :SCHEMA._zodworker_limits as limits on limits.name = keys.limit_name
    -- work due now, probed key by key (as a semi-join the planner would read every limited
    -- job); this and the room below are hints from the loop's snapshot, so that keys that
    -- are full or idle are neither locked nor counted again: room is rechecked once locked
    cross join lateral (
      select 1
      from :SCHEMA._zodworker_limited_jobs as limited
      inner join :SCHEMA._private_jobs as jobs on jobs.id = limited.job_id
      where limited.limit_name = keys.limit_name and limited.limit_key = keys.limit_key
        and limited.position = 0 and jobs.is_available = true
        and jobs.run_at <= coalesce(p_at, now())
      limit 1
    ) as due
    where (
      limits.concurrency is null or limits.concurrency > (
        select count(*) from :SCHEMA._zodworker_limit_slots as slots
        where slots.limit_name = keys.limit_name and slots.limit_key = keys.limit_key
      )
    ) and (
      limits.rate_count is null or limits.rate_count > (
        select count(*) from :SCHEMA._zodworker_limit_starts as starts
        where starts.limit_name = keys.limit_name and starts.limit_key = keys.limit_key
          and starts.started_at
            > coalesce(p_at, now()) - make_interval(secs => limits.rate_seconds)
      )
    )
    order by keys.served_at nulls first, keys.limit_name, keys.limit_key
    for update of keys skip locked
  loop
    exit when v_taken >= p_n;
    v_at := coalesce(p_at, clock_timestamp());
    v_room := :SCHEMA._zodworker_limit_room(v_key.limit_name, v_key.limit_key, v_at);
    continue when v_room <= 0;
    v_got := 0;
    for v_row in
      select * from :SCHEMA._zodworker_take_limited(
        p_pool_id, p_task_ids, p_forbidden, v_key.limit_name, v_key.limit_key, 1, v_at
      )
    loop
      v_got := v_got + 1;
      return next v_row;
    end loop;
    continue when v_got = 0;
    v_taken := v_taken + v_got;
    update :SCHEMA._zodworker_limit_keys as keys
    set served_at = v_at
    where keys.limit_name = v_key.limit_name and keys.limit_key = v_key.limit_key;
    if v_room > v_got then
      v_names := v_names || v_key.limit_name;
      v_keys := v_keys || v_key.limit_key;
    end if;
  end loop;
  while v_taken < p_n and v_next <= coalesce(array_length(v_names, 1), 0) loop
    v_at := coalesce(p_at, clock_timestamp());
    v_room := :SCHEMA._zodworker_limit_room(v_names[v_next], v_keys[v_next], v_at);
    if v_room > 0 then
      for v_row in
        select * from :SCHEMA._zodworker_take_limited(
          p_pool_id, p_task_ids, p_forbidden, v_names[v_next], v_keys[v_next],
          least(v_room, p_n - v_taken), v_at
        )
      loop
        v_taken := v_taken + 1;
        return next v_row;
      end loop;
    end if;
    v_next := v_next + 1;
  end loop;
  if v_taken >= p_n then
    -- filled: other pools with idle slots may find more
    perform pg_notify('zodworker:limits', '');
  end if;
  return;
end;
$$;
