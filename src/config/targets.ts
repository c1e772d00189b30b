/**
 * Rules about names in the configuration that both the CLI (to fail fast) and the activities
 * (authoritatively) apply: what a backup target resolves to, and where a restore may write.
 */
import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import type { Config, Site } from '../domain/inventory';
import { AccessDeniedError, DestinationExistsError, DeviceFaultError, NotFoundError } from '../domain/errors';
import { parseWith } from '../domain/validate';

const run = promisify(execFile);

/** The site a command addresses: the named one, or the first one when no name is given. */
export function findSite(config: Config, name?: string): Site {
  const site = name === undefined ? config.sites[0] : config.sites.find((s) => s.name === name);
  if (!site)
    throw new NotFoundError(
      `no site "${name}" in the configuration; sites: ${config.sites.map((s) => s.name).join(', ')}`,
      { site: name },
    );
  return site;
}

/** Checks that `host` is a host of the site, where a VM may be rebuilt; NotFoundError listing the hosts. */
export function requireHost(site: Site, host: string): void {
  if (!site.hosts.some((h) => h.name === host))
    throw new NotFoundError(
      `no host "${host}" in site ${site.name}; substitute hosts are: ${site.hosts.map((h) => h.name).join(', ')}`,
      { host, site: site.name },
    );
}

/**
 * Seed 003 step 2: a target is a VM (its data volume is what changes and is backed up), a volume
 * named array/volume, or a file or directory of a host named host:/path (the volume its file
 * system lives on, from the host's mounts). NotFoundError, with examples, for anything else.
 */
export function resolveTargetRef(site: Site, target: string): { array: string; volume: string; sizeBytes: number } {
  const vm = site.vms.find((v) => v.name === target);
  const onHost = /^([^:/]+):(\/.*)$/.exec(target);
  const ref = vm ? vm.dataVolume : onHost ? volumeOfPath(site, onHost[1] ?? '', onHost[2] ?? '') : target;
  const [array, volume] = ref.split('/');
  const vol = site.arrays.find((a) => a.name === array)?.volumes.find((v) => v.id === volume);
  if (!array || !volume || !vol) {
    const examples = [...site.vms.slice(0, 2).map((v) => v.name), site.vms[0]?.dataVolume].filter(Boolean).join(', ');
    throw new NotFoundError(
      `unknown target "${target}" in site ${site.name}: name a VM (its data volume is backed up) or a volume as array/volume${examples ? `, e.g. ${examples}` : ''}`,
      { target, site: site.name },
    );
  }
  return { array, volume, sizeBytes: vol.size };
}

/** The volume a host's file lives on: the mount with the longest path that holds it. */
function volumeOfPath(site: Site, hostName: string, file: string): string {
  const host = site.hosts.find((h) => h.name === hostName);
  if (!host)
    throw new NotFoundError(
      `no host "${hostName}" in site ${site.name}; hosts: ${site.hosts.map((h) => h.name).join(', ')}`,
      { host: hostName, site: site.name },
    );
  if (host.discoverMounts)
    throw new NotFoundError(
      `host ${hostName} discovers its mounts (discoverMounts: true), so ${hostName}:${file} is resolved only by the worker on that host when the operation resolves its target; name its volume as array/volume here, or list the host's mounts`,
      { host: hostName, path: file, site: site.name },
    );
  const normal = path.posix.normalize(file);
  const holds = (mount: string) => normal === mount || normal.startsWith(mount.endsWith('/') ? mount : `${mount}/`);
  const mount = host.mounts
    .filter((m) => holds(path.posix.normalize(m.path)))
    .sort((a, b) => b.path.length - a.path.length)[0];
  if (!mount)
    throw new NotFoundError(
      `no mount of host ${hostName} holds ${normal}${host.mounts.length ? `; its mounts: ${host.mounts.map((m) => `${m.path} on ${m.volume}`).join(', ')}` : '; give the host its mounts (path and volume) in the configuration'}`,
      { host: hostName, path: normal, site: site.name },
    );
  return mount.volume;
}

/**
 * The client's check before it starts an operation on a target: {@link resolveTargetRef}, except
 * that a path on a host that discovers its mounts is left to the worker on that host, which alone
 * can see them (the host itself must exist).
 */
export function checkTargetRef(site: Site, target: string): void {
  const onHost = /^([^:/]+):(\/.*)$/.exec(target);
  if (onHost && site.hosts.find((h) => h.name === onHost[1])?.discoverMounts) return;
  resolveTargetRef(site, target);
}

/** Which volume of an array of the site a device or file is (a loop device's back-file): the drivers answer. */
export type VolumeOfDevice = (file: string) => { array: string; volume: string } | undefined;

/**
 * Seed 003 step 2 as the worker runs it: {@link resolveTargetRef}, except that a `host:/path` of a
 * host that discovers its mounts is resolved on this machine — `findmnt` gives the device of the
 * file system holding the path, `losetup` a loop device's back-file, and `volumeOfDevice` (the
 * arrays' engines) the volume that is. NotFoundError naming the device when no array serves it.
 */
export async function resolveTargetOnHost(
  site: Site,
  target: string,
  volumeOfDevice: VolumeOfDevice,
): Promise<{ array: string; volume: string; sizeBytes: number }> {
  const onHost = /^([^:/]+):(\/.*)$/.exec(target);
  const host = site.hosts.find((h) => h.name === onHost?.[1]);
  if (!onHost || !host?.discoverMounts) return resolveTargetRef(site, target);
  const file = path.posix.normalize(onHost[2] ?? '/');
  const { device, mount } = await mountOf(host.name, file);
  const backing = /^\/dev\/loop\d+$/.test(device) ? await loopBackFile(host.name, device) : undefined;
  const ref = volumeOfDevice(backing ?? device);
  if (!ref)
    throw new NotFoundError(
      `${target} is on ${mount}, a file system on ${device}${backing ? ` (backed by ${backing})` : ''}, which no array of site ${site.name} serves; put the path on a volume of an array, or name the volume as array/volume`,
      { target, device, ...(backing ? { backing } : {}), mount, site: site.name },
    );
  return resolveTargetRef(site, `${ref.array}/${ref.volume}`);
}

const FindmntSchema = z.object({
  filesystems: z.array(z.object({ target: z.string(), source: z.string() })).min(1),
});
const LosetupSchema = z.object({
  loopdevices: z.array(z.object({ name: z.string(), 'back-file': z.string().nullable() })).min(1),
});

/** The mount holding `file` on this machine (its nearest existing ancestor, for a path not made yet) and its device. */
async function mountOf(host: string, file: string): Promise<{ device: string; mount: string }> {
  let existing = file;
  while (!existsSync(existing) && existing !== '/') existing = path.posix.dirname(existing);
  const out = await hostCommand(host, 'findmnt', ['--json', '--output', 'TARGET,SOURCE', '--target', existing]);
  const fs = parseWith(FindmntSchema, JSON.parse(out), `findmnt's answer for ${existing}`).filesystems[0];
  // A bind mount's source reads /dev/x[/dir]: the device is before the bracket.
  return { device: (fs?.source ?? '').replace(/\[.*\]$/, ''), mount: fs?.target ?? existing };
}

/** The file a loop device is backed by. */
async function loopBackFile(host: string, device: string): Promise<string | undefined> {
  const out = await hostCommand(host, 'losetup', ['--list', '--json', device]);
  const back = parseWith(LosetupSchema, JSON.parse(out), `losetup's answer for ${device}`).loopdevices[0]?.[
    'back-file'
  ];
  return back?.replace(/ \(deleted\)$/, '') ?? undefined;
}

async function hostCommand(host: string, cmd: string, args: string[]): Promise<string> {
  try {
    return (await run(cmd, args, { timeout: 30_000 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new DeviceFaultError(
      host,
      `${cmd} ${args.join(' ')} failed on ${host}: ${e.stderr?.trim() || e.message}`,
      err,
    );
  }
}

/**
 * Checks a restore destination: it must lie strictly below one of the restore roots (symlinks of
 * the existing part resolved, so a link cannot lead out) and must not exist. Returns it absolute.
 */
export function checkRestoreDestination(destination: string, roots: string[], configFile: string): string {
  const abs = path.resolve(destination);
  const real = realpathOfNearest(abs);
  const inside = roots.some((root) => {
    const r = existsSync(root) ? realpathSync(root) : path.resolve(root);
    const rel = path.relative(r, real);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  });
  if (!inside) {
    throw new AccessDeniedError(
      `restore destination ${abs} is outside the restore roots (${roots.join(', ')}); choose a path below one of them, or add a root under restoreRoots in ${configFile}`,
      { destination: abs, roots },
    );
  }
  if (existsSync(abs)) {
    throw new DestinationExistsError(
      `restore destination ${abs} already exists; Kura never overwrites data — choose a new path or move the file away`,
      { destination: abs },
    );
  }
  return abs;
}

/** Resolves symlinks of the longest existing prefix of `p`, then appends the rest. */
function realpathOfNearest(p: string): string {
  let existing = p;
  const rest: string[] = [];
  while (!existsSync(existing)) {
    rest.unshift(path.basename(existing));
    const parent = path.dirname(existing);
    if (parent === existing) break;
    existing = parent;
  }
  return path.join(realpathSync(existing), ...rest);
}
