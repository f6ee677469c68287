/** `npm run bench`: runs every benchmark in turn (each prints its table and one JSON line). */
import { spawnSync } from 'node:child_process';

const benches = ['bench/container-start.ts', 'bench/round-trip.ts'];
let failed = 0;
for (const b of benches) {
  process.stderr.write(`\n=== ${b}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', b], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);
