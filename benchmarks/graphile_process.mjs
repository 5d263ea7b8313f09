// Job-processing timings for graphile-worker 0.18, driven by benchmarks/process.py.
//
// Run with `node --input-type=module --eval <this file's text> <args>` and the graphile-worker
// cache dir as cwd (so `graphile-worker` resolves); with --eval the arguments start at argv[1].
//
//   migrate  URL SCHEMA
//       Install/upgrade the schema, then exit.
//   worker   URL SCHEMA CONCURRENCY LOCAL_QUEUE_SIZE WINDOW
//       Print "ready"; on a "go" line (stdin) start a worker pool running the no-op task
//       `noop`; on a "stop" line (or EOF) stop it gracefully and print one JSON line
//       {"handled": jobs run by this process, "cpu_s": CPU seconds from "go" to stopped,
//        "startup_s": seconds from "go" until run() resolved (connected, schema checked),
//        "first_start": wall clock (s since the epoch) of the first handler start,
//        "progress": [[jobs run, seconds since "go"], ...] at the first start (0 jobs) and
//        every WINDOW jobs (0: none)}.
//   latency  URL SCHEMA CONCURRENCY LOCAL_QUEUE_SIZE COUNT INTERVAL_MS WARMUP
//       Start a worker pool, wait until its LISTEN connection is up, then add WARMUP + COUNT
//       jobs one at a time INTERVAL_MS apart from a separate pool (makeWorkerUtils) in this
//       process. Each add records process.hrtime just before addJob; the task records it
//       when it starts. Prints {"latencies_ms": [...]} (handler start - add, warm-up dropped).
//
// LOCAL_QUEUE_SIZE <= 0 means no local queue. Completions and failures are batched with a
// delay of 0 ms. Only warnings and errors are logged (NO_LOG_SUCCESS=1 is set by the caller).
import { EventEmitter } from "node:events";
import { createInterface } from "node:readline";
import { Logger, makeWorkerUtils, run } from "graphile-worker";

const [mode, connectionString, schema, concurrency, localQueueSize, ...rest] =
  process.argv.slice(1);

const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") {
    process.stderr.write(`[graphile-worker ${level}] ${message}\n`);
  }
});

function workerOptions(taskList, events) {
  const worker = { completeJobBatchDelay: 0, failJobBatchDelay: 0 };
  if (Number(localQueueSize) > 0) {
    worker.localQueue = { size: Number(localQueueSize) };
  }
  return {
    connectionString,
    schema,
    concurrency: Number(concurrency),
    pollInterval: 2000,
    noHandleSignals: true,
    logger,
    events,
    taskList,
    parsedCronItems: [],
    preset: { worker },
  };
}

const cpuSeconds = (since) => {
  const { user, system } = process.cpuUsage(since);
  return (user + system) / 1e6;
};

if (mode === "migrate") {
  const utils = await makeWorkerUtils({ connectionString, schema, logger });
  try {
    await utils.migrate();
  } finally {
    await utils.release();
  }
} else if (mode === "worker") {
  const rl = createInterface({ input: process.stdin });
  const lines = rl[Symbol.asyncIterator]();
  const window = Number(rest[0] ?? 0);
  const progress = [];
  let handled = 0;
  let first = 0; // wall clock (s) of the first handler start: the parent's clock starts there
  console.log("ready");
  await lines.next(); // "go"
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const runner = await run(
    workerOptions({
      noop: async () => {
        if (!handled) {
          first = (performance.timeOrigin + performance.now()) / 1000;
          progress.push([0, Number(process.hrtime.bigint() - t0) / 1e9]);
        }
        handled++;
        if (window && handled % window === 0) {
          progress.push([handled, Number(process.hrtime.bigint() - t0) / 1e9]);
        }
      },
    }),
  );
  const startup = Number(process.hrtime.bigint() - t0) / 1e9;
  const died = runner.promise.then(
    () => "stopped",
    (error) => {
      throw error;
    },
  );
  await Promise.race([lines.next(), died]); // "stop" or EOF
  await runner.stop();
  const cpu = cpuSeconds(cpu0);
  rl.close();
  console.log(
    JSON.stringify({ handled, cpu_s: cpu, startup_s: startup, first_start: first, progress }),
  );
} else if (mode === "latency") {
  const [count, intervalMs, warmup] = rest.map(Number);
  const total = count + warmup;
  const added = new Array(total);
  const started = new Array(total);
  let seen = 0;
  let allStarted;
  const everyJobStarted = new Promise((resolve) => {
    allStarted = resolve;
  });
  const events = new EventEmitter();
  const listening = new Promise((resolve) => events.once("pool:listen:success", resolve));
  const runner = await run(
    workerOptions(
      {
        noop: async (payload) => {
          started[payload.i] = process.hrtime.bigint();
          if (++seen === total) allStarted();
        },
      },
      events,
    ),
  );
  const utils = await makeWorkerUtils({ connectionString, schema, logger });
  try {
    await listening;
    await new Promise((resolve) => setTimeout(resolve, 200)); // let the first fetch finish
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < total; i++) {
      const due = t0 + BigInt(Math.round(i * intervalMs * 1e6));
      const waitMs = Number(due - process.hrtime.bigint()) / 1e6;
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
      added[i] = process.hrtime.bigint();
      await utils.addJob("noop", { i });
    }
    let timer;
    await Promise.race([
      everyJobStarted,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`only ${seen}/${total} jobs started`)), 60_000);
      }),
    ]);
    clearTimeout(timer);
  } finally {
    await utils.release();
    await runner.stop();
  }
  const latencies = [];
  for (let i = warmup; i < total; i++) {
    latencies.push(Number(started[i] - added[i]) / 1e6);
  }
  console.log(JSON.stringify({ latencies_ms: latencies }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
