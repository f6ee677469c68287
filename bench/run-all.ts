/**
 * `npm run bench`: runs every benchmark in turn, one after the other (each prints its table and
 * one JSON line on stdout, progress on stderr). BENCH_ONLY=start,throughput runs a subset.
 */
import { spawnSync } from 'node:child_process';

const all = [
  'bench/container-start.ts',
  'bench/round-trip.ts',
  'bench/start.ts',
  'bench/throughput.ts',
  'bench/scale.ts',
];
const only = (process.env.BENCH_ONLY ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '');
const benches =
  only.length === 0 ? all : all.filter((b) => only.some((o) => b === `bench/${o}.ts`));
if (benches.length === 0) {
  process.stderr.write(`BENCH_ONLY matches none of: ${all.join(', ')}\n`);
  process.exit(2);
}
let failed = 0;
for (const b of benches) {
  process.stderr.write(`\n=== ${b}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', b], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    process.stderr.write(`=== ${b} failed (${r.status ?? r.signal})\n`);
  }
}
process.exit(failed === 0 ? 0 : 1);
