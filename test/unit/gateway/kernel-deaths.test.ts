/** The ring of recent sandbox ends: bounded, newest first. */
import { expect } from 'chai';
import { KernelDeaths } from '../../../gateway/kernel/kernel-deaths.js';

describe('KernelDeaths', () => {
  const death = (i: number) =>
    ({
      kernel_id: `k${i}`,
      container_id: null,
      cause: 'exit',
      reason: `exit ${i}`,
      exit_code: i,
    }) as const;

  it('lists the newest first, with the time of each end', () => {
    const d = new KernelDeaths(10);
    d.record(death(1), new Date('2026-01-01T00:00:01Z'));
    d.record(death(2), new Date('2026-01-01T00:00:02Z'));
    expect(d.list().map((x) => [x.kernel_id, x.at])).to.deep.equal([
      ['k2', '2026-01-01T00:00:02.000Z'],
      ['k1', '2026-01-01T00:00:01.000Z'],
    ]);
  });

  it('never holds more than its capacity (a kernel dying in a loop)', () => {
    const d = new KernelDeaths(3);
    for (let i = 0; i < 1000; i++) d.record(death(i));
    expect(d.list().map((x) => x.kernel_id)).to.deep.equal(['k999', 'k998', 'k997']);
  });
});
