-- How many jobs each live zodworker pool has finished since it started: completed, and
-- failed attempts (each error, retried or not). Written with every heartbeat, so the
-- dashboard shows throughput per minute without a write per job. Node graphile-worker pools
-- have no row; their work shows only in the table's deletion count.
alter table :SCHEMA._zodworker_pools
  add column completed bigint not null default 0,
  add column failed bigint not null default 0;
