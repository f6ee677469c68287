/**
 * The sandbox uids must name no host account: a process that escapes a sandbox, or a host user
 * who owns such a uid, must not meet each other. Checked at start against the host's account files.
 */
import { readFileSync } from 'node:fs';

/** The host files that assign uids and gids. */
export interface AccountFiles {
  passwd: string;
  group: string;
  subuid: string;
  subgid: string;
}

export const HOST_ACCOUNT_FILES: AccountFiles = {
  passwd: '/etc/passwd',
  group: '/etc/group',
  subuid: '/etc/subuid',
  subgid: '/etc/subgid',
};

function lines(file: string): string[][] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

/**
 * Every host account that owns an id in `first`..`first + count - 1`: as a uid (passwd), a gid
 * (group), or through an overlapping subordinate range (subuid/subgid: a rootless container of
 * that user could run as it). Empty: none.
 */
export function hostAccountsIn(
  first: number,
  count: number,
  files: AccountFiles = HOST_ACCOUNT_FILES,
): string[] {
  const last = first + count - 1;
  const inRange = (id: number): boolean => id >= first && id <= last;
  const found: string[] = [];
  for (const f of lines(files.passwd))
    if (inRange(Number(f[2]))) found.push(`user ${f[0]} (uid ${f[2]}, ${files.passwd})`);
  for (const f of lines(files.group))
    if (inRange(Number(f[2]))) found.push(`group ${f[0]} (gid ${f[2]}, ${files.group})`);
  for (const file of [files.subuid, files.subgid]) {
    for (const f of lines(file)) {
      const start = Number(f[1]);
      const end = start + Number(f[2]) - 1;
      if (start <= last && end >= first) found.push(`${f[0]}'s subordinate range (${file})`);
    }
  }
  return found;
}
