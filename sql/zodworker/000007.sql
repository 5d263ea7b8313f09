-- Job history and results: one row per finished job of a task that asks for it (a typed
-- output, history=True, or a pool recording everything), written by the zodworker pool that
-- finished it in the same statement that deletes (success) or fails the job, fenced by the
-- job's lease. graphile-worker deletes a job when it succeeds; this row is what is left.
--
--   outcome      'success', 'failed' (attempts used up or PermanentFailure) or 'cancelled'
--                (an operator cancelled it while it ran)
--   output       the handler's return value as JSON (validated against the task's output
--                type); null for failures and for tasks without one
--   attempts     attempts made, the last one included
--   started_at   when its last attempt was fetched; finished_at when its outcome was written
--
-- A job that is retried by an operator after failing for good and then succeeds replaces
-- its row. Jobs run by Node graphile-worker workers leave no row. Rows are pruned by the
-- pools' maintenance (retention by age and/or count), in small batches by finished_at.
create table :SCHEMA._zodworker_job_history (
  job_id bigint primary key,
  task_identifier text not null,
  queue_name text,
  key text,
  outcome text not null check (outcome in ('success', 'failed', 'cancelled')),
  payload json,
  output jsonb,
  last_error text,
  attempts int not null,
  max_attempts int not null,
  created_at timestamptz not null,
  started_at timestamptz,
  finished_at timestamptz not null default now(),
  duration float8
);
create index _zodworker_job_history_finished_at on :SCHEMA._zodworker_job_history (finished_at);
create index _zodworker_job_history_task on :SCHEMA._zodworker_job_history
  (task_identifier, job_id);
