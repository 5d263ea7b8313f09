-- The statements of the migration protocol (zodworker.db.migrate). The migrations
-- themselves are the numbered files of sql/migrations (graphile-worker's revisions) and
-- sql/zodworker (our own tables).

-- name: migrate_state
-- The server version, the newest revision and the newest breaking revision.
select current_setting('server_version_num')::int,
  (select max(id) from :SCHEMA.migrations),
  (select max(id) from :SCHEMA.migrations where breaking);

-- name: migrate_bootstrap
-- The schema and its migrations table, as graphile-worker creates them (several processes
-- may race here; the loser sees a unique violation and looks again).
create schema if not exists :SCHEMA;
create table if not exists :SCHEMA.migrations(
  id int primary key,
  ts timestamptz default now() not null
);
alter table :SCHEMA.migrations add column if not exists breaking boolean not null default false;

-- name: migrate_mark_breaking
-- Parameter: the breaking revision ids.
update :SCHEMA.migrations set breaking = true where id = any(%s);

-- name: migrate_record
-- The first statement of a migration's transaction: its row(s) in migrations. Two processes
-- applying one revision collide here, and the loser counts it as done.
-- Parameters: the breaking revision ids, the revisions recorded.
insert into :SCHEMA.migrations (id, breaking)
select id, id = any(%s) from unnest(%s::int[]) as id;

-- name: migrate_announce
-- graphile-worker's channel: workers stop on a breaking migration.
-- Parameter: {"migrationNumber": n, "breaking": bool} as JSON text.
select pg_notify('worker:migrate', %s);

-- name: own_migrations_bootstrap
create table if not exists :SCHEMA._zodworker_migrations(
  id int primary key,
  ts timestamptz default now() not null
);

-- name: own_migrations_state
select max(id) from :SCHEMA._zodworker_migrations;

-- name: own_migrations_record
insert into :SCHEMA._zodworker_migrations (id) values (%s);

-- name: drop_schema
-- Remove a schema and everything in it (zodworker.testing's per-test schemas).
drop schema if exists :SCHEMA cascade;
