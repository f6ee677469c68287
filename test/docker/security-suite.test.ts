/**
 * The security suite: every sandbox control of DESIGN.md "Sandbox controls", checked from inside a
 * real kernel reached through the gateway (POST /api/kernels, then Python run over the channels
 * socket). Each control is its own test, named for it; the Python only gathers facts and the
 * assertions are made here. Kill and removal controls (memory, panic, DELETE) are in
 * `security-lifecycle.test.ts`.
 *
 * Needs Docker and the kernel image (AIDO_KERNEL_IMAGE, else `kernel-image/build.sh --print-tag`).
 * Set AIDO_SKIP_DOCKER=1 to skip.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { DEFAULT_SANDBOX_UID, SANDBOX_UID_COUNT } from '../../security/policy.js';
import { buildSeccompProfile } from '../../security/seccomp.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { KernelProbe, pyData } from '../helpers/kernel-probe.js';

const MiB = 1024 * 1024;
const EPERM = 1;
const EAGAIN = 11;
const EACCES = 13;
const EMFILE = 24;
const ENOSPC = 28;
const EROFS = 30;
const ECONNREFUSED = 111;
const NO_CAPS = '0000000000000000';
/**
 * The connection file, the kernel's ipc sockets and (egress is on by default) the gateway's egress
 * proxy socket, and nothing else, in /run/kernel.
 */
const KERNEL_DIR_ENTRIES = ['connection.json', 'egress.sock', 'k-1', 'k-2', 'k-3', 'k-4', 'k-5'];
/** The unix sockets in /run/kernel: every entry but the connection file. */
const KERNEL_DIR_SOCKETS = KERNEL_DIR_ENTRIES.filter((e) => e !== 'connection.json').map(
  (e) => `/run/kernel/${e}`,
);
/**
 * Where the sandbox may write (DESIGN.md: tmpfs /tmp, /workspace; /run/kernel holds the sockets;
 * with egress on, the default, /pkgs is pip's size-capped install target).
 */
const WRITABLE_ROOTS = ['/tmp', '/workspace', '/run/kernel', '/pkgs'];

const skip = process.env.AIDO_SKIP_DOCKER === '1';

function under(path: string, roots: readonly string[]): boolean {
  return roots.some((r) => path === r || path.startsWith(`${r}/`));
}

/** The nameservers a resolv.conf names. */
function nameservers(resolvConf: string): string[] {
  return resolvConf
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[0] === 'nameserver' && f[1] !== undefined)
    .map((f) => f[1]!);
}

/**
 * The errno our seccomp profile answers for a system call it does not allow: the errno of an
 * unconditional SCMP_ACT_ERRNO rule naming it, else the profile's default. Throws when an
 * unconditional allow rule names it (then no errno is expected at all).
 */
function profileErrno(name: string): number {
  const profile = buildSeccompProfile();
  const rules = profile.syscalls.filter((r) => r.names.includes(name) && !r.args?.length);
  if (rules.some((r) => r.action === 'SCMP_ACT_ALLOW'))
    throw new Error(`the seccomp profile allows ${name} unconditionally`);
  return rules.find((r) => r.action === 'SCMP_ACT_ERRNO')?.errnoRet ?? profile.defaultErrnoRet;
}

describe('security suite: every sandbox control, checked from inside a real kernel', function () {
  this.timeout(120_000);
  let t: TestGateway;
  let a: KernelProbe;
  let b: KernelProbe;

  let started = false;

  before(async function () {
    if (skip) this.skip();
    t = await startTestGateway();
    started = true;
    const [ka, kb] = await Promise.all([t.startKernel(), t.startKernel()]);
    [a, b] = await Promise.all([KernelProbe.open(t, ka.id), KernelProbe.open(t, kb.id)]);
  });
  after(async () => {
    if (!started) return;
    // Closing the gateway removes every sandbox and closes every client socket.
    await t.close();
  });

  /** The HMAC key the gateway holds for a kernel. */
  function gatewayKey(kernelId: string): string {
    const key = t.gw.kernels.find(kernelId)?.connection?.key;
    if (key === undefined) throw new Error(`the gateway has no connection info for ${kernelId}`);
    return key;
  }

  it('user: the unmapped sandbox uid (no account, in the image or on the host), no root, no way to become root, no setuid/setgid file or file capability', async () => {
    const r = await a.json<{
      ids: Record<string, number | number[]>;
      user: string | null;
      uid0: string[];
      memberOf: string[];
      shadowReadable: boolean;
      escalation: Record<string, number>;
      walked: number;
      special: string[];
      fileCaps: string[];
      xattrErrnos: number[];
    }>(
      'user and setuid probe',
      `
import grp, os, pwd, stat
def _probe():
    r = {'ids': {'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(), 'egid': os.getegid(),
                 'resuid': list(os.getresuid()), 'resgid': list(os.getresgid()), 'groups': os.getgroups()}}
    try:
        r['user'] = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        r['user'] = None
    r['uid0'] = [p.pw_name for p in pwd.getpwall() if p.pw_uid == 0]
    r['memberOf'] = [g.gr_name for g in grp.getgrall() if r['user'] in g.gr_mem]
    r['shadowReadable'] = os.access('/etc/shadow', os.R_OK)
    r['escalation'] = {}
    for name, attempt in (('setuid', lambda: os.setuid(0)), ('setresuid', lambda: os.setresuid(0, 0, 0)),
                          ('setgid', lambda: os.setgid(0)), ('setgroups', lambda: os.setgroups([0]))):
        try:
            attempt()
            r['escalation'][name] = 0
        except OSError as e:
            r['escalation'][name] = e.errno
    special, caps, xattr_errnos, walked = [], [], set(), 0
    for path, st in _aido_walk('/'):
        walked += 1
        if not stat.S_ISREG(st.st_mode):
            continue
        if st.st_mode & 0o6000:
            special.append(path)
        try:
            os.getxattr(path, 'security.capability', follow_symlinks=False)
            caps.append(path)
        except OSError as e:
            xattr_errnos.add(e.errno)
    r.update(walked=walked, special=special, fileCaps=caps, xattrErrnos=sorted(xattr_errnos))
    return r
_aido_emit(_probe())
`,
    );
    // Its own uid from the sandbox range; gid and the only group the same.
    const U = r.ids.uid as number;
    expect(U).to.be.within(DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID + SANDBOX_UID_COUNT - 1);
    expect(r.ids).to.deep.equal({
      uid: U,
      euid: U,
      gid: U,
      egid: U,
      resuid: [U, U, U],
      resgid: [U, U, U],
      groups: [U],
    });
    expect(r.user, 'an account of the sandbox uid in the image').to.equal(null);
    expect(r.uid0, 'accounts with uid 0').to.deep.equal(['root']);
    expect(r.memberOf, 'supplementary groups listing the sandbox user').to.deep.equal([]);
    expect(r.shadowReadable, '/etc/shadow readable').to.equal(false);
    expect(r.escalation, 'attempts to become root').to.deep.equal({
      setuid: EPERM,
      setresuid: EPERM,
      setgid: EPERM,
      setgroups: EPERM,
    });
    expect(r.walked, 'entries walked (the walk reached the image)').to.be.above(5000);
    expect(r.special, 'setuid/setgid files').to.deep.equal([]);
    expect(r.fileCaps, 'files with capabilities').to.deep.equal([]);
    // ENODATA (61) or EOPNOTSUPP (95) only: any other errno would mean getxattr itself was refused.
    expect(r.xattrErrnos.filter((e) => e !== 61 && e !== 95)).to.deep.equal([]);
  });

  it('capabilities: CapEff, CapPrm, CapBnd, CapInh, CapAmb are 0, NoNewPrivs 1, Seccomp 2 in every process', async () => {
    const r = await a.json<{ self: string; procs: Record<string, Record<string, string[]>> }>(
      'status of every process',
      `
import os
def _probe():
    procs = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/' + pid + '/status') as f:
                fields = dict(l.split(':', 1) for l in f.read().splitlines() if ':' in l)
        except OSError:
            continue
        procs[pid] = {k: v.split() for k, v in fields.items()}
    return {'self': str(os.getpid()), 'procs': procs}
_aido_emit(_probe())
`,
    );
    const self = r.procs[r.self];
    expect(self?.Name, "the kernel's own status").to.deep.equal(['python3']);
    // docker-init, tini and the kernel at least.
    expect(Object.keys(r.procs)).to.have.length.of.at.least(3);
    for (const [pid, s] of Object.entries(r.procs)) {
      const who = `pid ${pid} (${s.Name?.join(' ')})`;
      for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'])
        expect(s[cap], `${who} ${cap}`).to.deep.equal([NO_CAPS]);
      expect(s.NoNewPrivs, `${who} NoNewPrivs`).to.deep.equal(['1']);
      expect(s.Seccomp, `${who} Seccomp (2 = filter)`).to.deep.equal(['2']);
      const U = self?.Uid?.[0] ?? '';
      expect(Number(U)).to.be.within(
        DEFAULT_SANDBOX_UID,
        DEFAULT_SANDBOX_UID + SANDBOX_UID_COUNT - 1,
      );
      expect(s.Uid, `${who} Uid`).to.deep.equal([U, U, U, U]);
      expect(s.Gid, `${who} Gid`).to.deep.equal([U, U, U, U]);
    }
  });

  it('syscalls: mount, namespaces, ptrace, keyring, bpf, perf, modules, kexec, reboot, syslog, personality… fail with EPERM', async function () {
    // Each call runs in a forked child of the kernel (same sandbox, same filter) with arguments that
    // would work were the call allowed, so a success changes nothing in the kernel itself.
    const r = await a.json<{
      machine: string;
      pid?: number;
      error?: string;
      results?: Record<string, [number, number]>;
    }>(
      'denied system calls',
      `
import ctypes, json, os, platform, struct
def _probe():
    machine = platform.machine()
    if machine != 'x86_64':
        return {'machine': machine}
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    L, P, S = ctypes.c_long, ctypes.c_void_p, ctypes.c_char_p
    class IOVec(ctypes.Structure):
        _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
    parent_memory = ctypes.create_string_buffer(b'parent memory', 16)
    local = ctypes.create_string_buffer(16)
    liov = IOVec(ctypes.cast(local, ctypes.c_void_p), 16)
    riov = IOVec(ctypes.cast(parent_memory, ctypes.c_void_p), 16)
    bpf_attr = ctypes.create_string_buffer(struct.pack('IIII', 2, 4, 4, 1), 72)
    perf_attr = ctypes.create_string_buffer(struct.pack('IIQQQQQ', 1, 64, 0, 0, 0, 0, 1 | 32 | 64), 64)
    handle = ctypes.create_string_buffer(struct.pack('Ii', 8, 1), 64)
    def battery():
        ns_fd = os.open('/proc/self/ns/uts', os.O_RDONLY)
        null_fd = os.open('/dev/null', os.O_RDONLY)
        calls = [
            ('mount', 165, (S(b'none'), S(b'/tmp'), S(b'tmpfs'), L(0), P(None))),
            ('umount2', 166, (S(b'/tmp'), L(2))),
            ('unshare', 272, (L(0x10000000 | 0x00020000),)),
            ('setns', 308, (L(ns_fd), L(0))),
            ('ptrace', 101, (L(0), L(0), P(None), P(None))),
            ('process_vm_readv', 310, (L(os.getppid()), ctypes.byref(liov), L(1), ctypes.byref(riov), L(1), L(0))),
            ('keyctl', 250, (L(0), L(-3), L(0))),
            ('add_key', 248, (S(b'user'), S(b'aido-probe'), S(b'x'), L(1), L(-2))),
            ('request_key', 249, (S(b'user'), S(b'aido-probe'), P(None), L(0))),
            ('bpf', 321, (L(0), bpf_attr, L(72))),
            ('perf_event_open', 298, (perf_attr, L(0), L(-1), L(-1), L(0))),
            ('userfaultfd', 323, (L(0o2000000 | 1),)),
            ('kexec_load', 246, (L(0), L(0), P(None), L(0))),
            ('init_module', 175, (P(None), L(0), S(b''))),
            ('finit_module', 313, (L(null_fd), S(b''), L(0))),
            ('delete_module', 176, (S(b'aido_probe'), L(0o4000))),
            ('open_by_handle_at', 304, (L(-100), handle, L(0))),
            ('pivot_root', 155, (S(b'/tmp'), S(b'/tmp'))),
            ('swapon', 167, (S(b'/tmp/aido-swap'), L(0))),
            ('swapoff', 168, (S(b'/tmp/aido-swap'),)),
            ('reboot', 169, (L(0xfee1dead), L(672274793), L(0))),
            ('syslog', 103, (L(10), P(None), L(0))),
            ('personality:ADDR_NO_RANDOMIZE', 135, (L(0x0040000),)),
            ('personality:READ_IMPLIES_EXEC', 135, (L(0x0400000),)),
            ('control:getpid', 39, ()),
            ('control:personality-query', 135, (L(0xffffffff),)),
        ]
        out = {}
        for name, nr, args in calls:
            ctypes.set_errno(0)
            ret = libc.syscall(L(nr), *args)
            out[name] = [ret, ctypes.get_errno() if ret == -1 else 0]
        return out
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            payload = json.dumps({'results': battery()})
        except BaseException as e:
            payload = json.dumps({'error': repr(e)})
        os.write(wfd, payload.encode())
        os._exit(0)
    os.close(wfd)
    chunks = []
    while True:
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(rfd)
    os.waitpid(pid, 0)
    r = json.loads(b''.join(chunks) or b'{"error": "the child wrote nothing"}')
    r.update(machine=machine, pid=pid)
    return r
_aido_emit(_probe())
`,
    );
    if (r.machine !== 'x86_64') {
      this.test!.title += ` (skipped: the kernel runs on ${r.machine}; the numbers are x86_64's)`;
      this.skip();
    }
    expect(r.error, 'the probe child').to.equal(undefined);
    const results = r.results!;
    // The rig works: allowed calls succeed in the same child.
    expect(results['control:getpid'], 'getpid (allowed)').to.deep.equal([r.pid, 0]);
    expect(results['control:personality-query']?.[0], 'personality query (allowed)').to.be.at.least(
      0,
    );
    const denied = Object.keys(results).filter((n) => !n.startsWith('control:'));
    expect(denied).to.have.length(24);
    const want: Record<string, [number, number]> = {};
    for (const name of denied) want[name] = [-1, profileErrno(name.split(':')[0]!)];
    expect(results).to.deep.include(want);
    // The profile answers every one of them with EPERM (ENOSYS is for clone3 alone).
    expect(Object.values(want).every(([, e]) => e === EPERM)).to.equal(true);
  });

  it('root file system: read-only; creating or changing files in /, /etc, /usr, /home/sandbox… fails with EROFS', async () => {
    const r = await a.json<{
      create: Record<string, number | string>;
      modify: Record<string, number>;
      rootReadOnly: boolean;
      rootMountOptions: string[];
      homeOwner: number;
    }>(
      'writes to the root file system',
      `
import os
def _probe():
    r = {'create': {}, 'modify': {}}
    for d in ['/', '/etc', '/usr', '/usr/local/bin', '/usr/lib/python3/dist-packages', '/home/sandbox', '/var', '/run', '/root']:
        if not os.path.isdir(d):
            r['create'][d] = 'missing'
            continue
        p = os.path.join(d, 'aido-probe')
        try:
            os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            os.remove(p)
            r['create'][d] = 0
        except OSError as e:
            r['create'][d] = e.errno
    for f in ['/etc/passwd', '/etc/ipython/ipython_kernel_config.py', '/usr/bin/python3']:
        try:
            os.close(os.open(f, os.O_WRONLY | os.O_APPEND))
            r['modify'][f] = 0
        except OSError as e:
            r['modify'][f] = e.errno
    r['rootReadOnly'] = bool(os.statvfs('/').f_flag & os.ST_RDONLY)
    with open('/proc/mounts') as f:
        r['rootMountOptions'] = [l.split()[3].split(',') for l in f if l.split()[1] == '/'][-1]
    r['homeOwner'] = os.stat('/home/sandbox').st_uid
    return r
_aido_emit(_probe())
`,
    );
    expect(r.rootReadOnly, 'statvfs("/") ST_RDONLY').to.equal(true);
    expect(r.rootMountOptions).to.include('ro');
    for (const [d, errno] of Object.entries(r.create)) {
      if (d === '/root' && errno === 'missing') continue;
      expect([EROFS, EACCES], `creating a file in ${d} (errno ${errno})`).to.include(errno);
    }
    for (const [f, errno] of Object.entries(r.modify))
      expect([EROFS, EACCES], `opening ${f} for writing (errno ${errno})`).to.include(errno);
    // That home belongs to the image's unused account (1000), not to the sandbox uid, which the
    // permission check refuses before the read-only mount would.
    expect(r.homeOwner).to.equal(1000);
    expect(r.create['/home/sandbox']).to.equal(EACCES);
  });

  it('writable: /tmp and /workspace are; /run/kernel holds only connection.json, the ipc sockets and the egress socket, which the kernel cannot move', async () => {
    const r = await a.json<{
      readBack: Record<string, string>;
      runKernel: {
        name: string;
        socket: boolean;
        regular: boolean;
        uid: number;
        gid: number;
        mode: number;
      }[];
      me: number;
      egressMoves: number[];
      key: string;
      mounts: Record<string, string[]>;
    }>(
      'writable places',
      `
import json, os, stat
def _probe():
    r = {'readBack': {}}
    for d in ['/tmp', '/workspace']:
        p = os.path.join(d, 'aido-writable-probe')
        with open(p, 'w') as f:
            f.write('written in ' + d)
        with open(p) as f:
            r['readBack'][d] = f.read()
        os.remove(p)
    r['runKernel'] = []
    for name in sorted(os.listdir('/run/kernel')):
        st = os.lstat('/run/kernel/' + name)
        r['runKernel'].append({'name': name, 'socket': stat.S_ISSOCK(st.st_mode),
                               'regular': stat.S_ISREG(st.st_mode), 'uid': st.st_uid,
                               'gid': st.st_gid, 'mode': stat.S_IMODE(st.st_mode)})
    r['me'] = os.getuid()
    r['egressMoves'] = []
    for move in (lambda: os.unlink('/run/kernel/egress.sock'),
                 lambda: os.rename('/run/kernel/egress.sock', '/run/kernel/egress.old')):
        try:
            move()
            r['egressMoves'].append(0)
        except OSError as e:
            r['egressMoves'].append(e.errno)
    with open('/run/kernel/connection.json') as f:
        r['key'] = json.load(f)['key']
    with open('/proc/mounts') as f:
        r['mounts'] = {l.split()[1]: l.split()[3].split(',') for l in f}
    return r
_aido_emit(_probe())
`,
    );
    expect(r.readBack).to.deep.equal({
      '/tmp': 'written in /tmp',
      '/workspace': 'written in /workspace',
    });
    expect(r.runKernel.map((e) => e.name)).to.deep.equal(KERNEL_DIR_ENTRIES);
    for (const e of r.runKernel) {
      // The kernel wrote its connection file; its sockets the gateway took over (sealed).
      if (e.name === 'connection.json') {
        expect(e.regular, e.name).to.equal(true);
        expect(e.uid, `${e.name} owner`).to.be.within(
          DEFAULT_SANDBOX_UID,
          DEFAULT_SANDBOX_UID + SANDBOX_UID_COUNT - 1,
        );
      } else {
        expect(e.socket, `${e.name} is a socket`).to.equal(true);
        expect(e.uid, `${e.name} owner`).to.equal(0);
      }
    }
    // The gateway's egress socket: root's, reachable through the sandbox's own gid only, and the
    // sticky, root-owned directory keeps the kernel from removing or replacing it.
    const egress = r.runKernel.find((e) => e.name === 'egress.sock');
    expect(egress?.gid, 'egress.sock group').to.equal(r.me);
    expect(egress?.mode, 'egress.sock mode').to.equal(0o660);
    expect(r.egressMoves, 'unlink and rename of egress.sock').to.deep.equal([EPERM, EPERM]);
    expect(r.key, "the connection file is this kernel's own").to.equal(gatewayKey(a.kernelId));
    expect(r.mounts['/tmp']).to.include.members(['rw', 'nosuid', 'nodev', 'noexec']);
    expect(r.mounts['/workspace']).to.include.members(['rw', 'nosuid', 'nodev']);
    // pip's target: exec allowed (a compiled wheel's .so is mapped executable), nothing else.
    expect(r.mounts['/pkgs']).to.include.members(['rw', 'nosuid', 'nodev']);
    expect(r.mounts['/pkgs']).not.to.include('noexec');
  });

  it('writable: nothing besides /tmp, /workspace, /run/kernel, /pkgs (egress) and a 4 MiB /dev/shm; /dev/mqueue is read-only', async () => {
    const r = await a.json<{
      writable: string[];
      walked: number;
      shm: string[];
      shmSize: number;
      mqueue: string[];
    }>(
      'every writable directory and file',
      `
import os, stat
def _probe():
    writable, walked = [], 0
    for path, st in _aido_walk('/'):
        walked += 1
        if (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) and os.access(path, os.W_OK):
            writable.append(path)
    mounts = {l.split()[1]: l.split()[3].split(',') for l in open('/proc/mounts')}
    s = os.statvfs('/dev/shm')
    return {'writable': writable, 'walked': walked, 'shm': mounts.get('/dev/shm', []),
            'shmSize': s.f_blocks * s.f_frsize, 'mqueue': mounts.get('/dev/mqueue', [])}
_aido_emit(_probe())
`,
    );
    expect(r.walked).to.be.above(5000);
    expect(r.writable.filter((p) => p === '/tmp' || p === '/workspace')).to.have.length(2);
    // /dev/shm is kept for POSIX semaphores (Python's multiprocessing), but capped at 4 MiB and
    // counted in validateLimits' memory budget; /dev/mqueue is read-only (creating a message queue
    // there would bypass the seccomp denial of mq_open).
    expect(
      r.writable.filter((p) => !under(p, [...WRITABLE_ROOTS, '/dev/shm'])),
      'writable outside /tmp, /workspace, /run/kernel, /pkgs, /dev/shm',
    ).to.deep.equal([]);
    expect(r.shmSize).to.equal(4 * 1024 * 1024);
    expect(r.shm).to.include.members(['nosuid', 'nodev', 'noexec']);
    expect(r.mqueue).to.include('ro');
  });

  it('/workspace: stops at 100 MB with ENOSPC and the kernel survives', async () => {
    const r = await a.json<{ size: number; written: number; errno: number | null }>(
      'fill /workspace',
      `
import os
def _probe():
    st = os.statvfs('/workspace')
    r = _aido_fill('/workspace/aido-fill')
    r['size'] = st.f_blocks * st.f_frsize
    return r
_aido_emit(_probe())
`,
      60_000,
    );
    expect(r.size, '/workspace size').to.equal(100 * MiB);
    expect(r.errno, 'errno of the failing write').to.equal(ENOSPC);
    expect(r.written / MiB, 'MiB written before ENOSPC').to.be.within(95, 101);
    const after = await a.json<{ free: number; entries: string[] }>(
      'the kernel answers after ENOSPC',
      `
import os
st = os.statvfs('/workspace')
_aido_emit({'free': st.f_bavail * st.f_frsize, 'entries': os.listdir('/workspace')})
`,
    );
    expect(after.entries, 'the fill file was removed').to.deep.equal([]);
    expect(after.free).to.equal(100 * MiB);
  });

  it('/tmp: capped at 64 MB (ENOSPC) and mounted noexec', async () => {
    const r = await a.json<{
      size: number;
      usedBefore: number;
      written: number;
      errno: number | null;
      execTmp: string;
      execBin: number;
    }>(
      'fill /tmp, then exec from it',
      `
import os, shutil, subprocess
def _probe():
    st = os.statvfs('/tmp')
    r = _aido_fill('/tmp/aido-fill')
    r['size'] = st.f_blocks * st.f_frsize
    r['usedBefore'] = (st.f_blocks - st.f_bfree) * st.f_frsize
    shutil.copy('/bin/true', '/tmp/aido-true')
    os.chmod('/tmp/aido-true', 0o755)
    try:
        subprocess.run(['/tmp/aido-true'], check=True)
        r['execTmp'] = 'ran'
    except OSError as e:
        r['execTmp'] = type(e).__name__ + ' ' + str(e.errno)
    finally:
        os.remove('/tmp/aido-true')
    r['execBin'] = subprocess.run(['/bin/true']).returncode
    return r
_aido_emit(_probe())
`,
      60_000,
    );
    expect(r.size, '/tmp size').to.equal(64 * MiB);
    expect(r.errno, 'errno of the failing write').to.equal(ENOSPC);
    expect(r.written, 'bytes written before ENOSPC').to.be.at.most(64 * MiB - r.usedBefore);
    expect((r.written + r.usedBefore) / MiB, 'MiB in use at ENOSPC').to.be.within(63, 64);
    expect(r.execBin, '/bin/true runs (the control)').to.equal(0);
    expect(r.execTmp, 'executing a copy of /bin/true from /tmp').to.equal(
      `PermissionError ${EACCES}`,
    );
  });

  it('network: only lo, no route, DNS fails, loopback connect refused, no host resolver in resolv.conf', async () => {
    const r = await a.json<{
      sysClassNet: string[];
      ifNames: string[];
      routes: string[];
      resolvConf: string | null;
      dns: string;
      loopbackConnect: number | string;
    }>(
      'network view',
      `
import os, socket
def _probe():
    r = {'sysClassNet': sorted(os.listdir('/sys/class/net')),
         'ifNames': sorted(n for _, n in socket.if_nameindex())}
    with open('/proc/net/route') as f:
        r['routes'] = f.read().splitlines()[1:]
    r['resolvConf'] = open('/etc/resolv.conf').read() if os.path.exists('/etc/resolv.conf') else None
    servers = [l.split()[1] for l in (r['resolvConf'] or '').splitlines() if l.startswith('nameserver')]
    # Only ever loopback: the lookup and the connect are tried only when nothing else is in reach.
    r['dns'] = r['loopbackConnect'] = 'not tried'
    if r['ifNames'] == ['lo'] and all(s in ('127.0.0.1', '::1') for s in servers):
        try:
            socket.getaddrinfo('example.com', 80)
            r['dns'] = 'resolved'
        except socket.gaierror as e:
            r['dns'] = 'gaierror'
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(('127.0.0.1', 1))
            r['loopbackConnect'] = 0
        except OSError as e:
            r['loopbackConnect'] = e.errno
        finally:
            s.close()
    return r
_aido_emit(_probe())
`,
    );
    expect(r.sysClassNet, '/sys/class/net').to.deep.equal(['lo']);
    expect(r.ifNames, 'if_nameindex').to.deep.equal(['lo']);
    expect(r.routes, 'IPv4 routes').to.deep.equal([]);
    const servers = nameservers(r.resolvConf ?? '');
    expect(servers.filter((s) => s !== '127.0.0.1')).to.deep.equal([]);
    const hostServers = nameservers(readFileSync('/etc/resolv.conf', 'utf8')).filter(
      (s) => s !== '127.0.0.1',
    );
    for (const s of hostServers)
      expect(r.resolvConf ?? '', `host nameserver ${s}`).not.to.include(s);
    expect(r.dns, 'getaddrinfo("example.com")').to.equal('gaierror');
    expect(r.loopbackConnect, 'connect to 127.0.0.1:1').to.equal(ECONNREFUSED);
  });

  it('docker socket: absent, and no unix socket anywhere but the kernel’s own ipc sockets', async () => {
    const r = await a.json<{ paths: Record<string, boolean>; sockets: string[]; env: string[] }>(
      'sockets in the file system',
      `
import os, stat
_aido_emit({
    'paths': {p: os.path.lexists(p) for p in ['/var/run/docker.sock', '/run/docker.sock',
                                              '/run/containerd/containerd.sock']},
    'sockets': sorted(p for p, st in _aido_walk('/') if stat.S_ISSOCK(st.st_mode)),
    'env': sorted(k for k in os.environ if k.startswith('DOCKER')),
})
`,
    );
    expect(r.paths).to.deep.equal({
      '/var/run/docker.sock': false,
      '/run/docker.sock': false,
      '/run/containerd/containerd.sock': false,
    });
    expect(r.sockets).to.deep.equal(KERNEL_DIR_SOCKETS);
    expect(r.env).to.deep.equal([]);
  });

  it('auth token: not in the environment, any process’s environ or cmdline, or any file', async () => {
    const canary = `aido-canary-${randomBytes(12).toString('hex')}`;
    const r = await a.json<{
      envHits: string[];
      proc: Record<string, boolean | string>;
      files: { hits: string[]; scanned: number };
      canaryHits: string[];
    }>(
      'search for the auth token',
      `
import os
def _probe(token, canary):
    needle = token.encode()
    r = {'envHits': [k for k, v in os.environ.items() if token in k or token in v], 'proc': {}}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        for what in ('environ', 'cmdline'):
            try:
                with open('/proc/' + pid + '/' + what, 'rb') as f:
                    r['proc'][pid + '/' + what] = needle in f.read()
            except OSError as e:
                r['proc'][pid + '/' + what] = 'unreadable ' + str(e.errno)
    r['files'] = _aido_grep(['/'], needle)
    # The control: the same search finds a string that is there.
    with open('/tmp/aido-canary-file', 'w') as f:
        f.write('before ' + canary + ' after')
    try:
        r['canaryHits'] = _aido_grep(['/'], canary.encode())['hits']
    finally:
        os.remove('/tmp/aido-canary-file')
    return r
_aido_emit(_probe(${pyData(t.token)}, ${pyData(canary)}))
`,
      30_000,
      // The token is passed as base64 data and kept out of IPython's history database in /tmp.
      { store_history: false },
    );
    expect(r.canaryHits, 'the control string').to.deep.equal(['/tmp/aido-canary-file']);
    expect(r.envHits, 'os.environ').to.deep.equal([]);
    expect(r.proc['1/environ'], '/proc/1/environ is read or refused').to.not.equal(undefined);
    for (const [entry, found] of Object.entries(r.proc))
      expect(found, `/proc/${entry}`).to.satisfy(
        (v: boolean | string) => v === false || String(v).startsWith('unreadable'),
      );
    expect(r.files.scanned, 'regular files searched').to.be.above(5000);
    expect(r.files.hits, 'files holding the token').to.deep.equal([]);
  });

  it('processes: capped at 50 pids (fork fails with EAGAIN) and the kernel survives', async () => {
    const r = await a.json<{
      max: string;
      tasksBefore: number;
      started: number;
      error: { type: string; errno: number } | null;
      currentAtFailure: string | null;
    }>(
      'spawn until the pids limit',
      `
import os, subprocess
def _cgroup(name):
    for p in ('/sys/fs/cgroup/pids/' + name, '/sys/fs/cgroup/' + name):
        if os.path.exists(p):
            with open(p) as f:
                return f.read().strip()
    return None
def _tasks():
    n = 0
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                n += len(os.listdir('/proc/' + pid + '/task'))
            except OSError:
                pass
    return n
def _probe():
    r = {'max': _cgroup('pids.max'), 'tasksBefore': _tasks(), 'error': None, 'currentAtFailure': None}
    procs = []
    try:
        while len(procs) < 200:
            procs.append(subprocess.Popen(['sleep', '30']))
    except OSError as e:
        r['currentAtFailure'] = _cgroup('pids.current')
        r['error'] = {'type': type(e).__name__, 'errno': e.errno}
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
    r['started'] = len(procs)
    return r
_aido_emit(_probe())
`,
      60_000,
    );
    expect(r.max, 'pids.max').to.equal('50');
    expect(r.error, 'the failing spawn').to.deep.equal({ type: 'BlockingIOError', errno: EAGAIN });
    expect(r.started).to.be.below(50);
    expect(r.started + r.tasksBefore, 'tasks at the limit').to.be.at.most(50);
    expect(Number(r.currentAtFailure), 'pids.current when the spawn failed').to.be.at.most(50);
    const after = await a.json<{ sleeps: number }>(
      'the kernel answers after the pids limit',
      `
import os
def _sleeps():
    n = 0
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                with open('/proc/' + pid + '/cmdline', 'rb') as f:
                    n += f.read().startswith(b'sleep')
            except OSError:
                pass
    return n
_aido_emit({'sleeps': _sleeps()})
`,
    );
    expect(after.sleeps, 'sleep processes left').to.equal(0);
  });

  it('open files: capped at 1024 (EMFILE), and the cap cannot be raised', async () => {
    const r = await a.json<{
      limit: [number, number];
      openBefore: number;
      opened: number;
      highest: number;
      errno: number | null;
      openAtLimit: number;
      raise: string;
    }>(
      'open /dev/null until EMFILE',
      `
import os, resource
def _probe():
    r = {'limit': list(resource.getrlimit(resource.RLIMIT_NOFILE)), 'openBefore': len(os.listdir('/proc/self/fd'))}
    fds, err, freed = [], None, 0
    try:
        while len(fds) < 100000:
            fds.append(os.open('/dev/null', os.O_RDONLY))
    except OSError as e:
        err = e.errno
        r['highest'] = max(fds, default=-1)
        # Count what is open at EMFILE: free one slot for listdir's own descriptor (more if
        # another thread takes it first; each freed probe descriptor is counted back).
        while fds and freed < 5:
            os.close(fds.pop())
            freed += 1
            try:
                r['openAtLimit'] = len(os.listdir('/proc/self/fd')) - 1 + freed
                break
            except OSError:
                pass
    finally:
        for fd in fds:
            os.close(fd)
    r.update(opened=len(fds) + freed, errno=err)
    r.setdefault('highest', -1)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
        r['raise'] = 'raised'
    except (ValueError, OSError) as e:
        r['raise'] = type(e).__name__
    return r
_aido_emit(_probe())
`,
    );
    expect(r.limit, 'RLIMIT_NOFILE (soft, hard)').to.deep.equal([1024, 1024]);
    expect(r.errno, 'errno of the failing open').to.equal(EMFILE);
    expect(r.highest, 'highest descriptor').to.equal(1023);
    // Counted at EMFILE itself (one probe descriptor swapped for listdir's own), not as
    // openBefore + opened: the kernel's threads open and close descriptors meanwhile (CI saw 1025).
    expect(r.openAtLimit, 'descriptors open at EMFILE').to.be.within(1000, 1024);
    expect(r.opened, 'descriptors the probe opened').to.be.above(900);
    expect(r.raise, 'raising the hard limit').to.equal('ValueError');
  });

  it('CPU: held near 0.5 core (CFS quota, and two busy processes get no more)', async () => {
    const r = await a.json<{
      quota: number | null;
      period: number | null;
      usageNs: number | null;
      wallS: number;
      throttled: number | null;
    }>(
      'CPU quota and a busy loop',
      `
import os, time
def _read(*paths):
    for p in paths:
        if os.path.exists(p):
            with open(p) as f:
                return f.read().split()
    return None
def _usage_ns():
    v1 = _read('/sys/fs/cgroup/cpuacct/cpuacct.usage')
    if v1:
        return int(v1[0])
    stat = _read('/sys/fs/cgroup/cpu.stat')
    return int(stat[stat.index('usage_usec') + 1]) * 1000 if stat else None
def _throttled():
    stat = _read('/sys/fs/cgroup/cpu/cpu.stat', '/sys/fs/cgroup/cpu.stat')
    return int(stat[stat.index('nr_throttled') + 1]) if stat else None
def _probe():
    quota, period = _read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us'), _read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')
    if quota is None:
        cpu_max = _read('/sys/fs/cgroup/cpu.max')
        quota, period = (cpu_max[:1], cpu_max[1:]) if cpu_max else (None, None)
    r = {'quota': int(quota[0]) if quota and quota[0] != 'max' else None,
         'period': int(period[0]) if period else None}
    end = time.monotonic() + 2.2
    u0, th0, w0 = _usage_ns(), _throttled(), time.monotonic()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            while time.monotonic() < end:
                pass
            os._exit(0)
        children.append(pid)
    time.sleep(2.0)
    u1, th1, w1 = _usage_ns(), _throttled(), time.monotonic()
    for pid in children:
        os.waitpid(pid, 0)
    r['usageNs'] = None if u0 is None else u1 - u0
    r['throttled'] = None if th0 is None else th1 - th0
    r['wallS'] = w1 - w0
    return r
_aido_emit(_probe())
`,
    );
    expect(r.quota, 'CFS quota').to.not.equal(null);
    expect(r.quota! / r.period!, 'quota / period').to.equal(0.5);
    expect(r.usageNs, "the container's CPU usage").to.not.equal(null);
    const cores = r.usageNs! / 1e9 / r.wallS;
    expect(cores, 'cores used by two busy processes').to.be.at.most(0.65);
    // The loop really ran: it used a fair share, or the quota throttled it (on a loaded host the
    // share alone can fall low; throttling still proves the limit bit).
    expect(
      cores > 0.2 || (r.throttled ?? 0) > 0,
      `busy loop ran (${cores.toFixed(2)} cores, throttled ${r.throttled} times)`,
    ).to.equal(true);
  });

  it("isolation: kernel B cannot see kernel A's files, processes, sockets or key", async () => {
    const marker = `aido-iso-${randomBytes(12).toString('hex')}`;
    const grepMarker = `_aido_emit(_probe(${pyData(marker)}))`;
    const procScan = `
import os
def _procs_with(needle):
    found = []
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                with open('/proc/' + pid + '/cmdline', 'rb') as f:
                    if needle in f.read():
                        found.append(pid)
            except OSError:
                pass
    return found
`;
    const seen = await a.json<{ hits: string[]; procs: string[]; key: string }>(
      'kernel A leaves the marker in files and a process',
      `${procScan}
import json, subprocess
def _probe(marker):
    for d in ('/workspace', '/tmp'):
        with open(d + '/' + marker, 'w') as f:
            f.write('content ' + marker)
    with open('/tmp/aido-iso-content', 'w') as f:
        f.write('only in the content: ' + marker)
    global _aido_iso_proc, _aido_iso_marker
    _aido_iso_marker = marker
    _aido_iso_proc = subprocess.Popen(['python3', '-c', 'import time; time.sleep(120)', marker])
    with open('/run/kernel/connection.json') as f:
        key = json.load(f)['key']
    return {'hits': _aido_grep(['/'], marker.encode())['hits'], 'procs': _procs_with(marker.encode()), 'key': key}
`.concat(grepMarker),
    );
    try {
      // The control: A finds its own marker with the same search B runs.
      expect(seen.hits).to.include.members([
        `/workspace/${marker}`,
        `/tmp/${marker}`,
        '/tmp/aido-iso-content',
      ]);
      expect(seen.procs, "A's process carrying the marker").to.have.length(1);

      const other = await b.json<{
        hits: string[];
        procs: string[];
        sockets: string[];
        runKernel: string[];
        key: string;
      }>(
        'kernel B searches for the marker',
        `${procScan}
import json, stat
def _probe(marker):
    with open('/run/kernel/connection.json') as f:
        key = json.load(f)['key']
    return {'hits': _aido_grep(['/'], marker.encode())['hits'], 'procs': _procs_with(marker.encode()),
            'sockets': sorted(p for p, st in _aido_walk('/') if stat.S_ISSOCK(st.st_mode)),
            'runKernel': sorted(os.listdir('/run/kernel')), 'key': key}
`.concat(grepMarker),
      );
      expect(other.hits, "A's marker in B's file system").to.deep.equal([]);
      expect(other.procs, "A's process seen from B").to.deep.equal([]);
      expect(other.runKernel).to.deep.equal(KERNEL_DIR_ENTRIES);
      expect(other.sockets).to.deep.equal(KERNEL_DIR_SOCKETS);
      expect(seen.key, "A's key").to.equal(gatewayKey(a.kernelId));
      expect(other.key, "B's key").to.equal(gatewayKey(b.kernelId));
      expect(other.key, "B's key differs from A's").to.not.equal(seen.key);
    } finally {
      await a.run(
        'kernel A cleans up',
        `
import os
_aido_iso_proc.kill()
_aido_iso_proc.wait()
for p in ('/workspace/' + _aido_iso_marker, '/tmp/' + _aido_iso_marker, '/tmp/aido-iso-content'):
    os.remove(p)
`,
      );
    }
  });
});
