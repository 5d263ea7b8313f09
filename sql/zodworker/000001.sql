-- zodworker's own objects, beside graphile-worker's schema. They carry the _zodworker
-- prefix and their own migration record (_zodworker_migrations), so graphile-worker's
-- revision and its view of the schema are unchanged.

-- One row per live zodworker pool. A pool refreshes last_seen every heartbeat; a pool whose
-- row is older than the recovery timeout is presumed dead (SIGKILL, lost machine): any pool
-- deletes its row and releases the job and queue locks it held, so its jobs run again
-- within seconds instead of graphile-worker's 4 hours. Pools without a row (Node
-- graphile-worker) are never touched by this; the 4-hour sweep still covers them.
create table :SCHEMA._zodworker_pools (
  pool_id text primary key,
  started_at timestamptz not null default now(),
  last_seen timestamptz not null default now(),
  hostname text,
  pid integer
);

alter table :SCHEMA._zodworker_pools enable row level security;
