/**
 * The sandbox uid must name no host account: a process that escapes a sandbox, or a host user who
 * owns that uid, must not meet each other. Checked at start against the host's account files.
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
 * Every host account that owns `id` as a uid (passwd), a gid (group), or inside a subordinate
 * range (subuid/subgid: a rootless container of that user could run as it). Empty: none.
 */
export function hostAccountsOf(id: number, files: AccountFiles = HOST_ACCOUNT_FILES): string[] {
  const found: string[] = [];
  for (const f of lines(files.passwd))
    if (Number(f[2]) === id) found.push(`user ${f[0]} (${files.passwd})`);
  for (const f of lines(files.group))
    if (Number(f[2]) === id) found.push(`group ${f[0]} (${files.group})`);
  for (const file of [files.subuid, files.subgid]) {
    for (const f of lines(file)) {
      const start = Number(f[1]);
      const count = Number(f[2]);
      if (id >= start && id < start + count) found.push(`${f[0]}'s subordinate range (${file})`);
    }
  }
  return found;
}
