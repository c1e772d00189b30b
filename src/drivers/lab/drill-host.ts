/**
 * The lab's isolated drill hosts (docs/adr/035, 043): a host created for one drill under the lab's
 * `drill-hosts/` directory, never one of the inventory's hosts, holding the volumes restored into it
 * (a VM's, created there by the lab hypervisor from its image's definition); a VM started there
 * boots for its boot time and then reports healthy while its volumes still hash to what was
 * restored. Removing the host removes everything the drill made.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import type { LoadedConfig } from '../../config/load';
import type { KuraPaths } from '../../config/paths';
import { findSite } from '../../config/targets';
import { sha256File } from '../../datamover/files';
import { ChecksumMismatchError, InvalidInputError, NotFoundError } from '../../domain/errors';
import type { VmHealth } from '../types';

const BootSchema = z.object({
  vm: z.string(),
  bootedAt: z.string(),
  readyAt: z.string(),
  volumes: z.array(z.object({ file: z.string(), sha256: z.string() })),
});

/** A volume of a VM started on a drill host: its file inside the host, and what it must hash to. */
export interface DrillVolume {
  file: string;
  sha256: string;
}

/** The directory of a lab drill host (under the lab's `drill-hosts/`); InvalidInput for a name no drill gives a host. */
export function drillHostDir(paths: KuraPaths, host: string): string {
  if (!/^drill-[0-9a-f]{8}$/.test(host)) throw new InvalidInputError(`"${host}" is not a drill host's name`);
  return path.join(paths.lab, 'drill-hosts', host);
}

export class LabDrillHosts {
  readonly root: string;

  constructor(
    private readonly loaded: LoadedConfig,
    private readonly paths: KuraPaths,
  ) {
    this.root = path.join(paths.lab, 'drill-hosts');
  }

  /** The directory of a drill host, where its restored volumes lie. */
  dirOf(host: string): string {
    return drillHostDir(this.paths, host);
  }

  /**
   * Creates the isolated host of a drill in a site. Refuses a name the inventory gives a host, so a
   * drill can never restore onto production. Idempotent.
   */
  async create(site: string, host: string): Promise<{ host: string; dir: string }> {
    const s = findSite(this.loaded.config, site);
    if (s.hosts.some((h) => h.name === host))
      throw new InvalidInputError(`${host} is a host of site ${site}; a drill restores only into a host of its own`);
    const dir = this.dirOf(host);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'host.json'), JSON.stringify({ site, host }));
    return { host, dir };
  }

  /**
   * Starts a VM on a drill host from volumes already restored into it: each must hash to what the
   * restore recorded, or the VM is not started. It reports healthy after `bootMs` (a definition's
   * boot time), the lab's OS boot time when not given.
   */
  async start(host: string, vm: string, volumes: DrillVolume[], bootMs?: number): Promise<void> {
    const dir = this.requireCreated(host);
    for (const v of volumes) {
      if (!path.resolve(v.file).startsWith(dir + path.sep))
        throw new InvalidInputError(`${v.file} is not a volume on drill host ${host}`);
      const got = await sha256File(v.file);
      if (got !== v.sha256)
        throw new ChecksumMismatchError(`${vm}'s volume ${path.basename(v.file)} hashes to ${got}, not ${v.sha256}`, {
          vm,
        });
    }
    const now = Date.now();
    const boot = {
      vm,
      bootedAt: new Date(now).toISOString(),
      readyAt: new Date(now + (bootMs ?? this.loaded.config.lab.osReboot)).toISOString(),
      volumes,
    };
    await writeFile(path.join(dir, `${encodeURIComponent(vm)}.vm.json`), JSON.stringify(boot));
  }

  /** The directory of a drill host that was created; NotFound when it was not (or is gone). */
  requireCreated(host: string): string {
    const dir = this.dirOf(host);
    if (!existsSync(path.join(dir, 'host.json')))
      throw new NotFoundError(`drill host ${host} does not exist; create it first`, { host });
    return dir;
  }

  /** The health of a VM started on a drill host, as the lab hypervisor reports a VM's. */
  async health(host: string, vm: string): Promise<VmHealth> {
    const file = path.join(this.dirOf(host), `${encodeURIComponent(vm)}.vm.json`);
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text === undefined) return { healthy: false, state: 'stopped', detail: `${vm} is not started on ${host}` };
    const boot = BootSchema.parse(JSON.parse(text));
    if (Date.parse(boot.readyAt) > Date.now())
      return { healthy: false, state: 'restarting', detail: `${vm} is booting on ${host} until ${boot.readyAt}` };
    for (const v of boot.volumes) {
      const got = await sha256File(v.file).catch(() => 'missing');
      if (got !== v.sha256)
        return { healthy: false, state: 'faulty', detail: `${vm}'s volume ${path.basename(v.file)} changed under it` };
    }
    return { healthy: true, state: 'running', detail: `${vm} is running on ${host} and answers` };
  }

  /** Removes a drill host and everything on it; whether it existed. */
  async remove(host: string): Promise<boolean> {
    const dir = this.dirOf(host);
    const existed = existsSync(dir);
    await rm(dir, { recursive: true, force: true });
    return existed;
  }

  /** The drill hosts that exist now (none once every drill has cleaned up). */
  async list(): Promise<string[]> {
    return readdir(this.root).catch(() => []);
  }
}
