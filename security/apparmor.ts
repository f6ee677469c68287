/**
 * AppArmor: whether the host can enforce the shipped profile (`security/apparmor/aido-kernel`), and
 * how the health check reports it. The profile is applied (`SecurityOpt: ["apparmor=aido-kernel"]`)
 * only when the host kernel has AppArmor enabled; elsewhere it ships unloaded, and the health
 * report says plainly that this control is not in force.
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The profile's name, as declared in the profile file and passed to Docker. */
export const APPARMOR_PROFILE_NAME = 'aido-kernel';

/** The shipped profile text, for `apparmor_parser -r -W <path>`. */
export const APPARMOR_PROFILE_PATH = fileURLToPath(
  new URL(`./apparmor/${APPARMOR_PROFILE_NAME}`, import.meta.url),
);

/** The kernel's switch: `Y` when the AppArmor LSM is enabled. */
const APPARMOR_ENABLED_FILE = '/sys/module/apparmor/parameters/enabled';

/** The kernel's list of loaded profiles, one `name (mode)` per line. */
const APPARMOR_PROFILES_FILE = '/sys/kernel/security/apparmor/profiles';

function readOrNull(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/**
 * True when the host kernel has AppArmor enabled (`/sys/module/apparmor/parameters/enabled` reads
 * `Y`). False when the module is absent, disabled or unreadable.
 */
export function hostHasAppArmor(enabledFile: string = APPARMOR_ENABLED_FILE): boolean {
  return readOrNull(enabledFile)?.trim() === 'Y';
}

/** True when a profile of that name is loaded in the kernel (any mode). */
export function appArmorProfileLoaded(
  name: string = APPARMOR_PROFILE_NAME,
  profilesFile: string = APPARMOR_PROFILES_FILE,
): boolean {
  const list = readOrNull(profilesFile);
  if (list === null) return false;
  return list.split('\n').some((line) => line.replace(/ \([a-z]+\)$/, '') === name);
}

/** How AppArmor stands for the sandboxes, for the health report. */
export interface AppArmorStatus {
  /**
   * `enforced`: host has AppArmor and the profile is loaded and requested; `host-unsupported`: the
   * host kernel has no AppArmor; `profile-not-loaded`: AppArmor is on but the profile is not loaded
   * (sandboxes would fail to start with it); `not-requested`: the policy asks for no profile.
   */
  state: 'enforced' | 'host-unsupported' | 'profile-not-loaded' | 'not-requested';
  /** A sentence for operators. */
  detail: string;
}

/** Facts about the host that {@link appArmorStatus} decides on. */
export interface AppArmorHostFacts {
  /** The AppArmor LSM is enabled. */
  enabled: boolean;
  /** The requested profile is loaded. */
  profileLoaded: boolean;
}

/** Reads the AppArmor facts for `profile` from the running host. */
export function readAppArmorHostFacts(profile: string = APPARMOR_PROFILE_NAME): AppArmorHostFacts {
  const enabled = hostHasAppArmor();
  return { enabled, profileLoaded: enabled && appArmorProfileLoaded(profile) };
}

/**
 * Describes whether AppArmor confines the sandboxes. Pure: host facts come in as data (see
 * {@link readAppArmorHostFacts}).
 */
export function appArmorStatus(profile: string | null, host: AppArmorHostFacts): AppArmorStatus {
  if (profile === null) {
    return { state: 'not-requested', detail: 'the sandbox policy requests no AppArmor profile' };
  }
  if (!host.enabled) {
    return {
      state: 'host-unsupported',
      detail: `the host kernel has no AppArmor: profile ${profile} ships in security/apparmor/ but is not in force`,
    };
  }
  if (!host.profileLoaded) {
    return {
      state: 'profile-not-loaded',
      detail: `AppArmor is enabled but profile ${profile} is not loaded: run apparmor_parser -r -W security/apparmor/${profile}`,
    };
  }
  return { state: 'enforced', detail: `sandboxes run confined by AppArmor profile ${profile}` };
}
