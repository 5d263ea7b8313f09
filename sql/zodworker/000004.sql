-- Which tasks each live zodworker pool runs, so that jobs waiting for a task no live pool
-- can run are noticed (a warning in the workers' logs, the admin's `workers list`). Null
-- for pools started before this revision; Node graphile-worker pools have no row at all.
alter table :SCHEMA._zodworker_pools add column tasks text[];
