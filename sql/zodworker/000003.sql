-- Operations: paused named queues and requested cancellations.
--
-- A paused queue's row in _private_job_queues is locked by 'zodworker:paused' until
-- the year 9999, so no worker (zodworker or graphile-worker) takes a job of it and upstream's
-- 4-hour sweep never frees it; this table records the pause, so it survives restarts and
-- can be listed and undone.
create table :SCHEMA._zodworker_paused_queues (
  queue_name text primary key,
  paused_at timestamptz not null default now()
);

-- A cancellation asked for a job that was running: the zodworker pool running it aborts
-- it (told by NOTIFY "zodworker:cancel", or by polling this table) and removes the row
-- once the job's outcome is written.
create table :SCHEMA._zodworker_cancellations (
  job_id bigint primary key,
  requested_at timestamptz not null default now()
);

alter table :SCHEMA._zodworker_paused_queues enable row level security;
alter table :SCHEMA._zodworker_cancellations enable row level security;
