/**
 * Gateway-owned sandbox state: binding records read without following links or blocking on a FIFO,
 * bounded and shape-checked; the sandbox uid checked against the host's account files.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';
import { SandboxBindings } from '../../../gateway/runtime/sandbox-bindings.js';
import { hostAccountsIn } from '../../../gateway/runtime/sandbox-uid.js';

use(chaiAsPromised);

const ID = 'a'.repeat(64);

describe('sandbox state', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'aido-state-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  describe('SandboxBindings', () => {
    it('writes a record atomically (root-only) and reads it back; none: undefined', async () => {
      const b = new SandboxBindings(dir);
      expect(await b.read(ID)).to.equal(undefined);
      await b.write(ID, { kernelId: 'k1', env: { KERNEL_USERNAME: 'ada' } });
      expect(await b.read(ID)).to.deep.equal({ kernelId: 'k1', env: { KERNEL_USERNAME: 'ada' } });
      expect(await b.containerIds()).to.deep.equal([ID]);
      await b.remove(ID);
      await b.remove(ID);
      expect(await b.containerIds()).to.deep.equal([]);
    });

    it('refuses, without blocking or following, a FIFO, a symlink, bad JSON and a wrong shape', async () => {
      const b = new SandboxBindings(dir);
      mkdirSync(b.dir, { recursive: true });
      const file = path.join(b.dir, `${ID}.json`);
      execFileSync('mkfifo', [file]);
      await expect(b.read(ID)).to.be.rejectedWith(/not a regular file/);
      rmSync(file);
      writeFileSync(path.join(dir, 'elsewhere.json'), '{"kernelId":"x","env":{}}');
      symlinkSync(path.join(dir, 'elsewhere.json'), file);
      await expect(b.read(ID)).to.be.rejected.and.eventually.have.property('code', 'ELOOP');
      rmSync(file);
      writeFileSync(file, '{not json');
      await expect(b.read(ID)).to.be.rejectedWith(SyntaxError);
      writeFileSync(file, '{"kernelId":"x","env":{"A":1}}');
      await expect(b.read(ID)).to.be.rejectedWith(/env A is not a string/);
    });

    it('refuses a container id that is not one', async () => {
      await expect(new SandboxBindings(dir).read('../x')).to.be.rejectedWith(/bad container id/);
    });
  });

  describe('hostAccountsIn', () => {
    it('names accounts, groups and subordinate ranges that own an id of the range', () => {
      const f = (name: string, text: string): string => {
        writeFileSync(path.join(dir, name), text);
        return path.join(dir, name);
      };
      const files = {
        passwd: f('passwd', 'root:x:0:0::/root:/bin/sh\nada:x:1000:1000::/home/ada:/bin/sh\n'),
        group: f('group', 'root:x:0:\nstaff:x:5000:\n'),
        subuid: f('subuid', 'ada:100000:65536\n'),
        subgid: path.join(dir, 'missing'),
      };
      expect(hostAccountsIn(1000, 1, files)).to.deep.equal([
        `user ada (uid 1000, ${files.passwd})`,
      ]);
      expect(hostAccountsIn(4000, 1001, files)).to.deep.equal([
        `group staff (gid 5000, ${files.group})`,
      ]);
      expect(hostAccountsIn(4000, 1000, files)).to.deep.equal([]);
      expect(hostAccountsIn(165535, 10, files)).to.deep.equal([
        `ada's subordinate range (${files.subuid})`,
      ]);
      expect(hostAccountsIn(90000, 10001, files)).to.deep.equal([
        `ada's subordinate range (${files.subuid})`,
      ]);
      expect(hostAccountsIn(165536, 65536, files)).to.deep.equal([]);
      expect(hostAccountsIn(2_000_000_000, 65536, files)).to.deep.equal([]);
    });
  });
});
