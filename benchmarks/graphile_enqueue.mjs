// Enqueue timings for graphile-worker, driven by benchmarks/enqueue.py.
// argv: connectionString schema payloadsFile singleCount batchSize batchTotal
// Prints one JSON line: {"single_s": ..., "batch_s": ...} (seconds, excluding start-up).
import { readFileSync } from "node:fs";
import { makeWorkerUtils } from "graphile-worker";

const [connectionString, schema, payloadsFile, single, batchSize, batchTotal] = process.argv.slice(2);
const payloads = JSON.parse(readFileSync(payloadsFile, "utf8"));
const utils = await makeWorkerUtils({ connectionString, schema });
try {
  await utils.migrate();
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < Number(single); i++) {
    const p = payloads[i % payloads.length];
    await utils.addJob(p.task, p.payload, p.queue ? { queueName: p.queue } : {});
  }
  const singleS = Number(process.hrtime.bigint() - t0) / 1e9;

  t0 = process.hrtime.bigint();
  for (let done = 0; done < Number(batchTotal); done += Number(batchSize)) {
    const specs = [];
    for (let i = 0; i < Number(batchSize); i++) {
      const p = payloads[(done + i) % payloads.length];
      specs.push({ identifier: p.task, payload: p.payload, queueName: p.queue ?? undefined });
    }
    await utils.addJobs(specs);
  }
  const batchS = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ single_s: singleS, batch_s: batchS }));
} finally {
  await utils.release();
}
