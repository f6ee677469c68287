/** Client-supplied kernel env: KERNEL_* and allow-listed names only, as data. */
import { expect } from 'chai';
import { GatewayError } from '../../../gateway/base/errors.js';
import { kernelEnvFrom } from '../../../gateway/kernel/kernel-env.js';

describe('kernelEnvFrom', () => {
  it('keeps KERNEL_* and allow-listed names and ignores the rest of a client environment', () => {
    const env = kernelEnvFrom(
      {
        KERNEL_USERNAME: 'a',
        KERNEL_WORKING_DIR: '/home/a',
        OK: '1',
        PATH: '/x',
        HOME: '/h',
        LD_PRELOAD: 'x.so',
        OTHER: 'y',
        'BAD-NAME': 'z',
      },
      ['OK', 'PATH', 'LD_PRELOAD'],
    );
    expect(env).to.deep.equal({ KERNEL_USERNAME: 'a', KERNEL_WORKING_DIR: '/home/a', OK: '1' });
  });

  it('drops oversized values and values with NUL bytes', () => {
    expect(
      kernelEnvFrom({ KERNEL_A: 'x'.repeat(5000), KERNEL_B: 'a\0b', KERNEL_C: 'ok' }, []),
    ).to.deep.equal({ KERNEL_C: 'ok' });
  });

  it('refuses env that is not an object of strings', () => {
    expect(() => kernelEnvFrom(['a'], [])).to.throw(GatewayError, /object/);
    expect(() => kernelEnvFrom({ KERNEL_A: 1 }, [])).to.throw(GatewayError, /string/);
    expect(kernelEnvFrom(undefined, [])).to.deep.equal({});
  });
});
