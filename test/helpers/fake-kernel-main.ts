/**
 * The fake kernel (fake-kernel.ts) as its own process, for tests where the kernel must die as a
 * process does (SIGKILL): `node --import tsx fake-kernel-main.ts '<ConnectionInfo JSON>'`.
 */
import type { ConnectionInfo } from '../../gateway/runtime/runtime.js';
import { FakeKernel } from './fake-kernel.js';

const conn = JSON.parse(process.argv[2] ?? '') as ConnectionInfo;
await FakeKernel.start(conn, (code) => process.exit(code));
// The runtime holds the other end of stdin: a test process that dies takes its kernels with it.
process.stdin.on('close', () => process.exit(0)).resume();
