-- Statements about the server rather than one schema (zodworker.db.connect). Identifiers
-- other than :SCHEMA (:DATABASE, :CHANNEL) are replaced by quoted identifiers as well.

-- name: ping
select 1;

-- name: database_exists
select 1 from pg_database where datname = %s;

-- name: create_database
create database :DATABASE;

-- name: listen
-- The worker's wake-up channels (jobs:insert, worker:migrate), one statement each.
LISTEN :CHANNEL;

-- name: unlisten
UNLISTEN :CHANNEL;

-- name: notify
-- A notification from the shared pool (the listener's start-up check).
select pg_notify(%s, %s);
