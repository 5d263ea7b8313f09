-- Leases. A pool's row records the lease it holds: when it expires (renewed by the pool's
-- own heartbeat, by the pool's own lease length), so every reaper judges a pool by that
-- pool's settings and never by its own. A job may only be locked under a lease that exists
-- and has not expired (the fetch checks), and every write of a job's outcome applies only
-- while the job is still locked by the lease it was fetched under.
--
-- Rows written by an older zodworker (no lease_seconds) keep the old rule: presumed dead
-- 30 seconds after their last heartbeat.
alter table :SCHEMA._zodworker_pools
  add column lease_expires_at timestamptz,
  add column lease_seconds double precision,
  add column heartbeat_seconds double precision;

update :SCHEMA._zodworker_pools set lease_expires_at = last_seen + interval '30 seconds';

alter table :SCHEMA._zodworker_pools
  alter column lease_expires_at set default now() + interval '30 seconds',
  alter column lease_expires_at set not null;
