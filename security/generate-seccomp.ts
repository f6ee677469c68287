/**
 * Writes `security/seccomp-profile.json` from {@link buildSeccompProfile}.
 * Run: `npx tsx security/generate-seccomp.ts` (then commit the file; a unit test checks drift).
 *
 * @packageDocumentation
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { allowedSyscallNames, seccompProfileJson } from './seccomp.js';

/** Where the committed profile lives, next to this script. */
export const SECCOMP_PROFILE_PATH = fileURLToPath(
  new URL('./seccomp-profile.json', import.meta.url),
);

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(SECCOMP_PROFILE_PATH, seccompProfileJson());
  process.stdout.write(
    `wrote ${SECCOMP_PROFILE_PATH} (${allowedSyscallNames().length} system call names allowed)\n`,
  );
}
