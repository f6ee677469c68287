/** Docs stay current: the README's configuration table names every setting the gateway reads. */
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { configRows } from '../../../gateway/base/config.js';

describe('README', () => {
  const readme = readFileSync('README.md', 'utf8');

  it('documents every configuration variable and flag', () => {
    for (const row of configRows()) {
      expect(readme, row.env).to.include(`\`${row.env}\``);
      expect(readme, row.flag).to.include(`\`${row.flag}\``);
    }
  });

  it('shows the test command that CI runs', () => {
    const ci = readFileSync('.ci/run', 'utf8');
    expect(ci).to.include('bash scripts/test.sh');
    expect(readme).to.include('bash scripts/test.sh');
  });
});
