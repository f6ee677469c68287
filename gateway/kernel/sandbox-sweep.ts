/**
 * What an execution leaves running in its sandbox after the deadline ended it. A fixed Python
 * program, run in the sandbox through a bounded exec as the sandbox user, kills every process but
 * the container's init chain and the kernel, and reads the sandbox's CPU time from its own cgroup
 * (mounted read-only in the container: the kernel cannot change it, and seccomp forbids ptrace, so
 * it cannot doctor the program's answer either; it can only stop or kill the program, which fails
 * the sweep, and a failed sweep restarts the kernel).
 *
 * Which processes stay: pid 1 (docker-init), then down the chain of oldest children to the kernel
 * (`ipykernel_launcher`, under tini). Whatever a cell forks is younger than the kernel, so it is
 * never on that chain, even once re-parented to tini. Processes the gateway runs by exec (the
 * workspace helpers) have parent pid 0, which no process forked inside the sandbox can have: they
 * stay too.
 */
import { z } from 'zod';
import { GatewayError } from '../base/errors.js';
import type { SweepReport } from '../base/deadline.js';
import type { Sandbox } from '../runtime/runtime.js';

/** Wall time of one sweep exec beyond its watch window. */
const SWEEP_TIMEOUT_MS = 10_000;

const PROGRAM = String.raw`
import json, os, signal, sys, time
def cpu_ns():
    try:
        with open('/sys/fs/cgroup/cpu.stat') as f:
            for line in f:
                k, v = line.split()
                if k == 'usage_usec': return int(v) * 1000
    except OSError:
        pass
    for p in ('/sys/fs/cgroup/cpuacct/cpuacct.usage', '/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage'):
        try:
            with open(p) as f: return int(f.read().strip())
        except OSError:
            pass
    sys.exit(3)

def procs():
    out = {}
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            with open('/proc/%s/stat' % p) as f: rest = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        out[int(p)] = (int(rest[1]), int(rest[19]))
    return out

def is_kernel(p):
    try:
        with open('/proc/%d/cmdline' % p, 'rb') as f: argv = f.read().split(b'\0')
    except OSError:
        return False
    # The kernel itself, not the init and tini above it, whose argv also names it.
    return argv[1:3] == [b'-m', b'ipykernel_launcher']

def keep(ps):
    kept, parent = {1, os.getpid()}, 1
    for _ in range(3):
        kids = sorted((st, p) for p, (pp, st) in ps.items() if pp == parent)
        if not kids: break
        parent = kids[0][1]
        kept.add(parent)
        if is_kernel(parent): break
    if not is_kernel(parent): sys.exit(4)
    return kept | {p for p, (pp, _) in ps.items() if pp == 0}, parent

def runnable(pid):
    n = 0
    try:
        for t in os.listdir('/proc/%d/task' % pid):
            try:
                with open('/proc/%d/task/%s/stat' % (pid, t)) as f:
                    if f.read().rsplit(')', 1)[1].split()[0] == 'R': n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n

window_s, samples = int(sys.argv[1]) / 1000, int(sys.argv[2])
killed, kept, kernel = set(), None, None
for _ in range(10):
    ps = procs()
    if kept is None: kept, kernel = keep(ps)
    strays = [p for p in ps if p not in kept and p not in killed]
    if not strays: break
    # Stopped first, all of them, so that none forks a replacement while the others die.
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in strays:
            try: os.kill(p, sig)
            except OSError: pass
    killed.update(strays)
# Then the idle kernel, watched: CPU time of the whole sandbox, and how often a thread of the
# kernel was running or waiting to run (a busy thread is, however loaded the host is).
cpu0, t0, busy = cpu_ns(), time.monotonic_ns(), 0
for _ in range(samples):
    time.sleep(window_s / samples)
    if runnable(kernel) > 0: busy += 1
print(json.dumps({'killed': len(killed), 'cpu_ns': cpu_ns() - cpu0, 'window_ns': time.monotonic_ns() - t0,
                  'runnable': busy / max(1, samples)}))
`;

const Answer = z.strictObject({
  killed: z.number().int().nonnegative(),
  cpu_ns: z.number().int().nonnegative(),
  window_ns: z.number().int().positive(),
  runnable: z.number().min(0).max(1),
});

/**
 * Kills every process of the sandbox but its init chain and the kernel, then watches the idle
 * kernel for `windowMs`: the sandbox's CPU time over it, and the share of `samples` in which a
 * thread of the kernel was runnable.
 */
export async function sweepSandbox(
  sandbox: Sandbox,
  windowMs: number,
  samples: number,
): Promise<SweepReport> {
  const r = await sandbox.exec(
    ['python3', '-I', '-S', '-c', PROGRAM, String(Math.round(windowMs)), String(samples)],
    undefined,
    { limits: { timeoutMs: windowMs + SWEEP_TIMEOUT_MS, maxOutputBytes: 64 * 1024 } },
  );
  if (r.exitCode !== 0)
    throw new GatewayError(
      'SANDBOX_EXEC_FAILED',
      r.exitCode === 4
        ? 'the kernel process was not found in the sandbox'
        : `the sweep failed in the sandbox (exit code ${r.exitCode})`,
    );
  // Exactly the one line the program prints in a single write. The kernel can open this pipe
  // (same uid) and add bytes, but not inside that write: a line of its own, or text after ours,
  // fails here, and a prefix cannot make valid JSON without a suffix. A failed sweep restarts.
  const text = r.stdout.toString('utf8');
  let parsed;
  try {
    parsed = /^\{[^\n]*\}\n$/.test(text) ? Answer.safeParse(JSON.parse(text)) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!parsed?.success) throw new GatewayError('SANDBOX_EXEC_FAILED', 'the sweep answered garbage');
  const d = parsed.data;
  return { killed: d.killed, cores: d.cpu_ns / d.window_ns, runnable: d.runnable };
}
