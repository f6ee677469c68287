import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import {
  APPARMOR_PROFILE_NAME,
  APPARMOR_PROFILE_PATH,
  appArmorProfileLoaded,
  appArmorStatus,
  hostHasAppArmor,
} from '../../../security/apparmor.js';
import { DEFAULT_POLICY } from '../../../security/policy.js';

describe('security/apparmor', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'aido-aa-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function file(name: string, text: string): string {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  }

  describe('hostHasAppArmor', () => {
    it('is true only when the kernel switch reads Y', () => {
      expect(hostHasAppArmor(file('y', 'Y\n'))).to.equal(true);
      expect(hostHasAppArmor(file('n', 'N\n'))).to.equal(false);
      expect(hostHasAppArmor(path.join(dir, 'missing'))).to.equal(false);
    });
  });

  describe('appArmorProfileLoaded', () => {
    it('finds the profile by exact name in the kernel list', () => {
      const list = file('profiles', 'docker-default (enforce)\naido-kernel (enforce)\n');
      expect(appArmorProfileLoaded('aido-kernel', list)).to.equal(true);
      expect(appArmorProfileLoaded('aido', list)).to.equal(false);
      expect(appArmorProfileLoaded('aido-kernel', path.join(dir, 'missing'))).to.equal(false);
    });
  });

  describe('appArmorStatus', () => {
    it('says plainly when the host cannot enforce the profile', () => {
      const s = appArmorStatus('aido-kernel', { enabled: false, profileLoaded: false });
      expect(s.state).to.equal('host-unsupported');
      expect(s.detail).to.match(/no AppArmor.*not in force/);
    });
    it('distinguishes not loaded, enforced and not requested', () => {
      expect(appArmorStatus('aido-kernel', { enabled: true, profileLoaded: false }).state).to.equal(
        'profile-not-loaded',
      );
      expect(appArmorStatus('aido-kernel', { enabled: true, profileLoaded: true }).state).to.equal(
        'enforced',
      );
      expect(appArmorStatus(null, { enabled: true, profileLoaded: true }).state).to.equal(
        'not-requested',
      );
    });
  });

  describe('the shipped profile', () => {
    const text = readFileSync(APPARMOR_PROFILE_PATH, 'utf8');

    it('declares the profile name the policy requests', () => {
      expect(DEFAULT_POLICY.appArmorProfile).to.equal(APPARMOR_PROFILE_NAME);
      expect(text).to.match(/^profile aido-kernel flags=\(/m);
    });

    it('denies mounts, ptrace, raw and packet sockets, capabilities and kernel knobs', () => {
      for (const rule of [
        'deny mount,',
        'deny umount,',
        'deny pivot_root,',
        'deny ptrace,',
        'deny capability,',
        'deny network inet raw,',
        'deny network packet,',
        'deny @{PROC}/sys/** wl,',
        'deny /sys/** wl,',
        'deny @{PROC}/sysrq-trigger rwklx,',
      ]) {
        expect(text, rule).to.include(`  ${rule}\n`);
      }
    });

    it('grants write only under /tmp, /workspace, /run/kernel and /dev/shm', () => {
      const writable = text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.startsWith('/') && /\s[a-z]*w[a-z]*,$/.test(l))
        .map((l) => l.split(/\s/)[0]!);
      const allowed =
        /^\/(tmp|workspace|run\/kernel|dev\/shm)(\/|\/\*\*)?$|^\/dev\/(null|zero|full|tty|pts\/\*)$/;
      expect(writable.filter((p) => !allowed.test(p))).to.deep.equal([]);
      expect(writable).to.include.members(['/tmp/**', '/workspace/**', '/run/kernel/**']);
    });

    it('compiles with apparmor_parser (skipped where the parser is not installed)', function () {
      const probe = spawnSync('apparmor_parser', ['--version'], { encoding: 'utf8' });
      if (probe.error) this.skip();
      const r = spawnSync('apparmor_parser', ['-Q', '-K', '-S', APPARMOR_PROFILE_PATH], {
        encoding: 'buffer',
      });
      expect(r.status, r.stderr.toString()).to.equal(0);
      expect(r.stdout.length).to.be.above(0);
    });
  });
});
