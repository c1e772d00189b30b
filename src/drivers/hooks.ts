/**
 * Application hooks (seed 003's DB coordination scripts): what puts the application on a target
 * into backup mode before a split or snapshot and takes it out after. A target without a hook gets
 * one that does nothing, so every plan has the same launch points. The `script` kind runs argument
 * arrays with execFile, never through a shell, and kills a command that outlives its timeout (so does
 * `fsfreeze`, which freezes a mounted file system around the launch); the
 * `postgres` kind (postgres-hook.ts) holds one database session from begin to end, so it is held
 * by one activity instead of two calls.
 */
import { execFile } from 'node:child_process';
import type { FsfreezeHookSpec, ScriptHookSpec, Site } from '../domain/inventory';
import { DeviceFaultError, HookTimeoutError, NotFoundError } from '../domain/errors';
import type { LoadedConfig } from '../config/load';
import { findSite, resolveTargetOnHost, resolveTargetRef, type VolumeOfDevice } from '../config/targets';
import { PostgresHook } from './postgres-hook';

/**
 * The application's side of a consistent split: a hook entered and left by two separate calls
 * (`script`, `none`), or one that holds a session from begin to end (`postgres`).
 */
export type ApplicationHook = StepHook | PostgresHook;

/** A hook whose begin and end are separate calls: nothing is held between them. */
export interface StepHook {
  /** What the hook is, for the plan and the report: `script`, `fsfreeze`, or `none`. */
  readonly kind: string;
  /** False: begin and end may run in different activities, even on different workers. */
  readonly session: false;
  /** How long entering backup mode may take before the operation stops without splitting. */
  readonly timeoutMs: number;
  /** Puts the application into backup mode; HookTimeoutError when it does not within `timeoutMs`. */
  beginBackupMode(signal?: AbortSignal): Promise<void>;
  /** Takes the application out of backup mode; idempotent (leaving twice is fine). */
  endBackupMode(signal?: AbortSignal): Promise<void>;
}

/** The hook of a target that has none: nothing to coordinate. */
export const NO_HOOK: StepHook = {
  kind: 'none',
  session: false,
  timeoutMs: 0,
  beginBackupMode: () => Promise.resolve(),
  endBackupMode: () => Promise.resolve(),
};

/** The hook kura.yaml gives a target of a site (a VM, or array/volume), or NO_HOOK. */
export function hookFor(loaded: LoadedConfig, site: string, target: string): ApplicationHook {
  const s = findSite(loaded.config, site);
  return hookOfVolume(s, target, resolveTargetRef(s, target));
}

/**
 * {@link hookFor} as the worker asks it: a `host:/path` of a host that discovers its mounts is
 * resolved on this machine (resolveTargetOnHost), so its volume's hook is found as step 2 found the volume.
 */
export async function hookOnHost(
  loaded: LoadedConfig,
  site: string,
  target: string,
  volumeOfDevice: VolumeOfDevice,
): Promise<ApplicationHook> {
  const s = findSite(loaded.config, site);
  return hookOfVolume(s, target, await resolveTargetOnHost(s, target, volumeOfDevice));
}

function hookOfVolume(s: Site, target: string, r: { array: string; volume: string }): ApplicationHook {
  const volume = `${r.array}/${r.volume}`;
  const vm = s.vms.find((v) => v.dataVolume === volume);
  // A hook on the VM, on its data volume, or reached by a host's path all mean one application.
  const hook = s.hooks.find((h) => h.target === target || h.target === volume || h.target === vm?.name);
  if (hook === undefined) return NO_HOOK;
  switch (hook.kind) {
    case 'postgres':
      return new PostgresHook(hook);
    case 'fsfreeze':
      return new FsfreezeHook(hook);
    case 'script':
      return new ScriptHook(hook);
  }
}

/**
 * The `script` kind: one command to begin, one to end, and optionally one to log in before the
 * begin and one to log out after the end, each an argument array run under the hook's timeout.
 */
export class ScriptHook implements StepHook {
  readonly kind = 'script';
  readonly session = false;
  readonly timeoutMs: number;

  constructor(private readonly hook: ScriptHookSpec) {
    this.timeoutMs = hook.timeout;
  }

  async beginBackupMode(signal?: AbortSignal): Promise<void> {
    if (this.hook.login) await this.run('login', this.hook.login, signal);
    try {
      await this.run('begin', this.hook.begin, signal);
    } catch (err) {
      // A failed begin leaves no session behind; the begin's own error is what the operation reports.
      await this.logout(signal).catch(() => undefined);
      throw err;
    }
  }

  async endBackupMode(signal?: AbortSignal): Promise<void> {
    try {
      await this.run('end', this.hook.end, signal);
    } catch (err) {
      // Logged out even when the end failed, so a retried end does not pile up sessions.
      await this.logout(signal).catch(() => undefined);
      throw err;
    }
    await this.logout(signal);
  }

  private async logout(signal?: AbortSignal): Promise<void> {
    if (this.hook.logout) await this.run('logout', this.hook.logout, signal);
  }

  private run(what: HookCommand, argv: string[], signal?: AbortSignal): Promise<void> {
    return runHookCommand(this.hook.target, this.timeoutMs, what, argv, signal);
  }
}

/**
 * The `fsfreeze` kind: the file system mounted at `path` on the worker's machine is frozen
 * (`fsfreeze -f`) for the split or snapshot, so its image on the volume is clean, and thawed
 * (`fsfreeze -u`) after. Writers to it block while it is frozen. The thaw is idempotent: the
 * engine calls it again from its compensation on every failure path, and a file system that is not
 * frozen (the kernel's EINVAL) is already what the thaw wants.
 */
export class FsfreezeHook implements StepHook {
  readonly kind = 'fsfreeze';
  readonly session = false;
  readonly timeoutMs: number;

  constructor(private readonly hook: FsfreezeHookSpec) {
    this.timeoutMs = hook.timeout;
  }

  beginBackupMode(signal?: AbortSignal): Promise<void> {
    return runHookCommand(
      this.hook.target,
      this.timeoutMs,
      'begin',
      ['fsfreeze', '-f', this.hook.path],
      signal,
      C_LOCALE,
    );
  }

  async endBackupMode(signal?: AbortSignal): Promise<void> {
    try {
      await runHookCommand(
        this.hook.target,
        this.timeoutMs,
        'end',
        ['fsfreeze', '-u', this.hook.path],
        signal,
        C_LOCALE,
      );
    } catch (err) {
      if (err instanceof DeviceFaultError && /Invalid argument/.test(err.message)) return;
      throw err;
    }
  }
}

type HookCommand = 'login' | 'begin' | 'end' | 'logout';

/** fsfreeze's messages in English whatever the host's locale: a thaw of a thawed file system is told by its text. */
const C_LOCALE = { ...process.env, LC_ALL: 'C' };

/**
 * Runs one command of a hook as an argument array (execFile, no shell), killed when it outlives
 * `timeoutMs`: HookTimeoutError then, DeviceFaultError with its error output when it fails.
 */
function runHookCommand(
  target: string,
  timeoutMs: number,
  what: HookCommand,
  argv: string[],
  signal?: AbortSignal,
  env?: NodeJS.ProcessEnv,
): Promise<void> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new NotFoundError(`the ${what} command of the hook is empty`));
  const step = what === 'begin' || what === 'end' ? `${what}-backup-mode` : what;
  const label = `the ${step} hook of ${target} (${argv.join(' ')})`;
  return new Promise((resolve, reject) => {
    const started = Date.now();
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', signal, maxBuffer: 1024 * 1024, ...(env ? { env } : {}) },
      (err, _stdout, stderr) => {
        if (!err) return resolve();
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
        if (e.killed && !signal?.aborted && Date.now() - started >= timeoutMs - 50) {
          return reject(
            new HookTimeoutError(
              `${label} did not finish within ${timeoutMs} ms, so the application is not known to be in backup mode; it was stopped`,
              { target, timeoutMs, hook: what },
            ),
          );
        }
        const why = String(stderr).trim() || e.message;
        reject(new DeviceFaultError(target, `${label} failed: ${why}`, err));
      },
    );
  });
}
