/**
 * Application hooks: a target without one gets the hook that does nothing; the `script` kind runs
 * argument arrays without a shell, and a command that outlives its timeout is killed and reported
 * as HookTimeout.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../src/config/load';
import { ConfigSchema, ScriptHookSchema } from '../../src/domain/inventory';
import { FsfreezeHook, hookFor, NO_HOOK, ScriptHook } from '../../src/drivers/hooks';
import { PostgresHook } from '../../src/drivers/postgres-hook';
import { hospitalPreset } from '../../src/lab/preset';

const dir = mkdtempSync(path.join(tmpdir(), 'kura-hooks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function loaded(hooks: unknown[]): LoadedConfig {
  const cfg = hospitalPreset({ vms: 2, hosts: 1 });
  cfg.sites[0]!.hosts![0]!.mounts = [{ path: '/srv', volume: 'array-01/vm-002-data' }];
  (cfg.sites[0] as { hooks?: unknown[] }).hooks = hooks;
  return { config: ConfigSchema.parse(cfg), file: path.join(dir, 'kura.yaml'), dir };
}

const script = (over: object = {}) =>
  ScriptHookSchema.parse({ target: 'vm-001', kind: 'script', begin: ['true'], end: ['true'], ...over });

describe('hookFor', () => {
  const l = loaded([
    { target: 'vm-001', kind: 'script', begin: ['true'], end: ['true'] },
    { target: 'array-01/vm-002-data', kind: 'script', begin: ['true'], end: ['true'], timeout: '2s' },
  ]);

  it('gives a target without a hook the one that does nothing', async () => {
    const none = loaded([]);
    expect(hookFor(none, 'hospital', 'vm-001')).toBe(NO_HOOK);
    await expect(NO_HOOK.beginBackupMode()).resolves.toBeUndefined();
  });

  it("finds a VM's hook by the VM, by its data volume, and through a host's path on it", () => {
    expect(hookFor(l, 'hospital', 'vm-001')).toMatchObject({ kind: 'script', timeoutMs: 60_000 });
    expect(hookFor(l, 'hospital', 'array-01/vm-001-data')).toMatchObject({ kind: 'script', timeoutMs: 60_000 });
    expect(hookFor(l, 'hospital', 'vm-002')).toMatchObject({ timeoutMs: 2000 });
    expect(hookFor(l, 'hospital', 'host-01:/srv/db')).toMatchObject({ timeoutMs: 2000 });
  });

  it('refuses a hook on a target the site does not have, and a second hook on one target', () => {
    const cfg = hospitalPreset({ vms: 1, hosts: 1 });
    (cfg.sites[0] as { hooks?: unknown[] }).hooks = [
      { target: 'vm-009', kind: 'script', begin: ['true'], end: ['true'] },
      { target: 'vm-001', kind: 'script', begin: ['true'], end: ['true'] },
      { target: 'vm-001', kind: 'script', begin: ['true'], end: ['true'] },
    ];
    const issues = ConfigSchema.safeParse(cfg).error?.issues.map((i) => i.message);
    expect(issues).toEqual([
      '"vm-009" is neither a VM nor an array/volume of this site',
      '"vm-001" already has a hook (hooks[1]); give a target one hook',
    ]);
  });
});

describe('script hooks', () => {
  it('run the argument array as it is: no shell expands anything', async () => {
    const file = path.join(dir, 'never');
    await new ScriptHook(script({ begin: ['echo', `$(touch ${file})`, ';', 'touch', file] })).beginBackupMode();
    expect(existsSync(file)).toBe(false);
    const made = path.join(dir, 'made');
    await new ScriptHook(script({ end: ['touch', made] })).endBackupMode();
    expect(existsSync(made)).toBe(true);
  });

  it('kill a command that outlives the timeout and report HookTimeout', async () => {
    const t0 = Date.now();
    const err = await new ScriptHook(script({ begin: ['sleep', '5'], timeout: '200ms' }))
      .beginBackupMode()
      .catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(err).toMatchObject({
      type: 'HookTimeout',
      message: expect.stringMatching(/begin-backup-mode hook of vm-001 \(sleep 5\) did not finish within 200 ms/),
    });
  });

  it('log in before the begin and log out after the end, each command in its turn', async () => {
    const log = path.join(dir, 'order-ok');
    const say = (word: string) => ['sh', '-c', `echo ${word} >> "$0"`, log];
    const hook = new ScriptHook(
      script({ login: say('login'), begin: say('begin'), end: say('end'), logout: say('logout') }),
    );
    await hook.beginBackupMode();
    expect(readFileSync(log, 'utf8').split('\n').filter(Boolean)).toEqual(['login', 'begin']);
    await hook.endBackupMode();
    expect(readFileSync(log, 'utf8').split('\n').filter(Boolean)).toEqual(['login', 'begin', 'end', 'logout']);
  });

  it('log out after a begin that failed, and report the begin', async () => {
    const log = path.join(dir, 'order-failed');
    const say = (word: string, code = 0) => ['sh', '-c', `echo ${word} >> "$0"; exit ${code}`, log];
    const err = await new ScriptHook(script({ login: say('login'), begin: say('begin', 3), logout: say('logout') }))
      .beginBackupMode()
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      type: 'DeviceFault',
      message: expect.stringMatching(/begin-backup-mode hook of vm-001/),
    });
    expect(readFileSync(log, 'utf8').split('\n').filter(Boolean)).toEqual(['login', 'begin', 'logout']);
  });

  it('kill a login or logout that outlives the timeout and report HookTimeout naming it', async () => {
    const log = path.join(dir, 'order-slow');
    const begin = ['sh', '-c', 'echo begin >> "$0"', log];
    const login = await new ScriptHook(script({ login: ['sleep', '5'], begin, timeout: '200ms' }))
      .beginBackupMode()
      .catch((e: unknown) => e);
    expect(login).toMatchObject({
      type: 'HookTimeout',
      message: expect.stringMatching(/login hook of vm-001 \(sleep 5\) did not finish within 200 ms/),
      details: { hook: 'login', timeoutMs: 200 },
    });
    // A login that did not finish is no session: the begin never ran.
    expect(existsSync(log)).toBe(false);
    const t0 = Date.now();
    const logout = await new ScriptHook(script({ logout: ['sleep', '5'], timeout: '200ms' }))
      .endBackupMode()
      .catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(logout).toMatchObject({
      type: 'HookTimeout',
      message: expect.stringMatching(/logout hook of vm-001 \(sleep 5\) did not finish within 200 ms/),
    });
  });

  it('read login and logout from kura.yaml as non-empty argument arrays', () => {
    expect(script({ login: ['db-login', '--admin'] })).toMatchObject({ login: ['db-login', '--admin'] });
    expect(ScriptHookSchema.safeParse({ ...script(), logout: [] }).error?.issues[0]).toMatchObject({
      path: ['logout'],
    });
  });

  it('report a command that fails as a device fault with its error output', async () => {
    const err = await new ScriptHook(script({ begin: ['ls', path.join(dir, 'missing')] }))
      .beginBackupMode()
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'DeviceFault', message: expect.stringMatching(/failed: .*No such file/) });
  });
});

describe('fsfreeze hooks', () => {
  it('are read from kura.yaml with their mount point and run fsfreeze on it', () => {
    const l = loaded([{ target: 'vm-001', kind: 'fsfreeze', path: '/srv', timeout: '5s' }]);
    expect(hookFor(l, 'hospital', 'vm-001')).toBeInstanceOf(FsfreezeHook);
    expect(hookFor(l, 'hospital', 'vm-001')).toMatchObject({ kind: 'fsfreeze', session: false, timeoutMs: 5000 });
  });

  it('refuse a mount point that is not an absolute path', () => {
    const issues = ConfigSchema.safeParse(
      (() => {
        const cfg = hospitalPreset({ vms: 1, hosts: 1 });
        (cfg.sites[0] as { hooks?: unknown[] }).hooks = [{ target: 'vm-001', kind: 'fsfreeze', path: 'srv' }];
        return cfg;
      })(),
    ).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(issues).toEqual([
      'sites.0.hooks.0.path: must be the absolute path of a mount point, e.g. /var/lib/postgresql',
    ]);
  });
});

describe('postgres hooks', () => {
  it('are read from kura.yaml with their defaults and hold a session', () => {
    const l = loaded([{ target: 'vm-001', kind: 'postgres', user: 'kura_backup', passwordEnv: 'KURA_PG_PASSWORD' }]);
    const hook = hookFor(l, 'hospital', 'vm-001');
    expect(hook).toBeInstanceOf(PostgresHook);
    expect(hook).toMatchObject({ kind: 'postgres', session: true, timeoutMs: 60_000, heartbeatMs: 10_000 });
    expect((hook as PostgresHook).where).toBe('kura_backup@127.0.0.1:5432/postgres');
  });

  it('refuse a hook without a user or with a password variable that is not a name', () => {
    const cfg = hospitalPreset({ vms: 1, hosts: 1 });
    (cfg.sites[0] as { hooks?: unknown[] }).hooks = [{ target: 'vm-001', kind: 'postgres', passwordEnv: 'not a name' }];
    const issues = ConfigSchema.safeParse(cfg).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(issues).toEqual([
      'sites.0.hooks.0.user: Invalid input: expected string, received undefined',
      'sites.0.hooks.0.passwordEnv: must be the name of an environment variable',
    ]);
  });
});
