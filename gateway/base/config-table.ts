/** Prints the configuration table as Markdown (for the README): `npx tsx gateway/base/config-table.ts`. */
import { configRows } from './config.js';

const lines = ['| env | flag | default | meaning |', '|---|---|---|---|'];
for (const r of configRows())
  lines.push(`| \`${r.env}\` | \`${r.flag}\` | \`${r.default}\` | ${r.help} |`);
process.stdout.write(`${lines.join('\n')}\n`);
