/**
 * The lab's hypervisor: the VMs of the inventory, on their hosts, each built from a software
 * volume and a data volume; power states, injected faults and restarts in progress live in the
 * lab state (a VM never touched is running and healthy), and every recovery action is written to
 * the lab's event log once per request.
 */
import { existsSync, linkSync, mkdirSync, renameSync, copyFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import type { LoadedConfig } from '../../config/load';
import { requireHost } from '../../config/targets';
import type { KuraPaths } from '../../config/paths';
import type { LabState } from '../../lab/state';
import { ChecksumMismatchError, DeviceFaultError, InvalidInputError, NotFoundError } from '../../domain/errors';
import type { Vm } from '../../domain/inventory';
import { VmDefinitionSchema, definitionVolume, type VmDefinition } from '../../domain/vm-image';
import { parseWith } from '../../domain/validate';
import { cures, type RestartScope } from '../../domain/ladder';
import { labVolumePath, sizeOf, writeVolume } from '../../lab/files';
import { copyFile, copyFileAtomic, sha256File } from '../../datamover/files';
import { sha256Hex } from '../../datamover/sha256';
import type { HypervisorDriver, ImageRef, ProgressFn, RebuildImages, VmHealth, VmInfo, VmRequest } from '../types';
import { requireImagesOf } from '../rebuild-images';
import { LabDrillHosts, type DrillVolume } from './drill-host';
import { findSite, findVolume } from './storage';

/** The lab event each restart scope writes. */
export const RESTART_EVENTS = { apl: 'apl-restart', mw: 'mw-restart', os: 'os-reboot' } as const;

export class LabHypervisor implements HypervisorDriver {
  constructor(
    private readonly loaded: LoadedConfig,
    private readonly state: LabState,
    private readonly paths?: KuraPaths,
  ) {}

  async describeVm(site: string, vm: string): Promise<VmInfo> {
    const v = this.vm(site, vm);
    const host = this.state.vmRuntime(site, vm).host ?? v.host;
    return {
      site,
      vm,
      host,
      state: this.state.vmState(site, vm),
      softwareVolume: v.softwareVolume,
      dataVolume: v.dataVolume,
    };
  }

  async listVms(site: string): Promise<VmInfo[]> {
    const s = findSite(this.loaded, site);
    return Promise.all(s.vms.map((v) => this.describeVm(site, v.name)));
  }

  async health(site: string, vm: string): Promise<VmHealth> {
    this.vm(site, vm);
    if (this.state.vmState(site, vm) === 'stopped')
      return { healthy: false, state: 'stopped', detail: `${vm} is stopped` };
    const { busyUntil } = this.state.vmRuntime(site, vm);
    if (busyUntil !== null && Date.parse(busyUntil) > Date.now())
      return { healthy: false, state: 'restarting', detail: `${vm} is restarting until ${busyUntil}` };
    const fault = this.state.vmFault(site, vm);
    if (fault) return { healthy: false, state: 'faulty', detail: `${vm} has a fault since ${fault.injectedAt}` };
    return { healthy: true, state: 'running', detail: `${vm} is running and answers` };
  }

  async restart(site: string, vm: string, scope: RestartScope, req: VmRequest): Promise<void> {
    this.vm(site, vm);
    const ms = {
      apl: this.loaded.config.lab.aplRestart,
      mw: this.loaded.config.lab.mwRestart,
      os: this.loaded.config.lab.osReboot,
    }[scope];
    this.state.vmRequestOnce(req.request, site, vm, RESTART_EVENTS[scope], () => {
      const cured = this.cureIf(site, vm, scope);
      this.state.setVmState(site, vm, 'running');
      this.state.setVmRuntime(site, vm, { busyUntil: new Date(Date.now() + ms).toISOString() });
      this.state.recordEvent(vm, RESTART_EVENTS[scope], {
        site,
        rung: req.rung,
        incident: req.incident,
        request: req.request,
        cured,
        takesMs: ms,
      });
      return { cured };
    });
  }

  async snapshotDataVolume(
    site: string,
    vm: string,
    dest: string,
    onProgress: ProgressFn,
    signal?: AbortSignal,
  ): Promise<{ sizeBytes: number; sha256: string }> {
    const file = this.volumeFile(site, this.vm(site, vm).dataVolume);
    await mkdir(path.dirname(dest), { recursive: true });
    return copyFileAtomic(file, dest, { onProgress, ...(signal ? { signal } : {}) });
  }

  async writeBaseImage(
    site: string,
    vm: string,
    kind: 'software' | 'guarantee',
    dest: string,
    onProgress: ProgressFn,
  ): Promise<{ sizeBytes: number; sha256: string }> {
    const v = this.vm(site, vm);
    const [array, volume] = (kind === 'software' ? v.softwareVolume : v.dataVolume).split('/') as [string, string];
    const { size } = findVolume(this.loaded, site, array, volume);
    // The lab creates each volume from its seed (lab/files.ts); the same seed is the image the
    // management side built the VM from: the software image, and the data that is known to boot.
    let bytes = 0;
    await writeVolume(dest, `${site}/${array}/${volume}`, size, (n) =>
      onProgress({ bytes: (bytes += n), total: size }),
    );
    return { sizeBytes: size, sha256: await sha256File(dest) };
  }

  async createVolumeFromImage(
    site: string,
    vm: string,
    image: ImageRef,
    req: VmRequest,
    onProgress: ProgressFn,
    resumeBytes = 0,
    signal?: AbortSignal,
  ): Promise<{ volume: string; sizeBytes: number }> {
    const v = this.vm(site, vm);
    const canonical = this.volumeFile(site, v.dataVolume);
    const volume = `${canonical.slice(0, -'.img'.length)}.new-${tag(req.request)}.img`;
    if (this.state.vmRequestDone(req.request)) return { volume, sizeBytes: image.sizeBytes };
    if (!existsSync(image.file))
      throw new NotFoundError(`image ${image.imageId} has no file at ${image.file}; the image store lost it`, {
        imageId: image.imageId,
      });
    const rate = this.loaded.config.lab.volumeCopyRate;
    // The digest covers the whole volume: a resumed copy reads back what it had already written.
    const { sha256: sha } = await copyFile(image.file, volume, {
      onProgress,
      resumeBytes,
      ...(rate ? { rateBytesPerSec: rate } : {}),
      ...(signal ? { signal } : {}),
    });
    if (sha !== image.sha256) {
      throw new ChecksumMismatchError(
        `the volume built from image ${image.imageId} hashes to ${sha}, but the image was recorded as ${image.sha256}; the image is damaged`,
        { imageId: image.imageId },
      );
    }
    this.state.vmRequestOnce(req.request, site, vm, 'volume-create', () => {
      this.state.recordEvent(vm, 'volume-create', {
        site,
        rung: req.rung,
        incident: req.incident,
        request: req.request,
        image: image.imageId,
        volume,
        resumedFrom: resumeBytes,
      });
      return { volume };
    });
    return { volume, sizeBytes: image.sizeBytes };
  }

  async swapDataVolume(
    site: string,
    vm: string,
    volume: string,
    image: ImageRef,
    req: VmRequest,
  ): Promise<{ retired: string }> {
    const v = this.vm(site, vm);
    const canonical = this.volumeFile(site, v.dataVolume);
    const retired = `${canonical.slice(0, -'.img'.length)}.retired-${tag(req.request)}.img`;
    if (path.dirname(volume) !== path.dirname(canonical))
      throw new InvalidInputError(`volume ${volume} is not a volume of ${vm}'s array`);
    this.state.vmRequestOnce(req.request, site, vm, 'volume-swap', () => {
      // Detach: keep the old volume under another name (for forensics); attach: the new one takes
      // the data volume's place. A retry after the rename finds the new file gone and the swap done.
      if (existsSync(volume)) {
        if (!existsSync(retired)) linkSync(canonical, retired);
        renameSync(volume, canonical);
      } else if (!existsSync(retired)) {
        throw new NotFoundError(`the new volume ${volume} does not exist; create it from an image first`, { volume });
      }
      const cured = this.cureIf(site, vm, image.kind === 'guarantee' ? 'guarantee' : 'data');
      this.state.recordEvent(vm, 'volume-swap', {
        site,
        rung: req.rung,
        incident: req.incident,
        request: req.request,
        image: image.imageId,
        retired,
        cured,
      });
      return { retired };
    });
    return { retired };
  }

  async rebuild(site: string, vm: string, host: string, images: RebuildImages, req: VmRequest): Promise<void> {
    const v = this.vm(site, vm);
    requireHost(findSite(this.loaded, site), host);
    for (const img of [images.software, images.data]) {
      if (!existsSync(img.file))
        throw new NotFoundError(`image ${img.imageId} has no file at ${img.file}`, { imageId: img.imageId });
    }
    const ms = this.loaded.config.lab.osReboot;
    this.state.vmRequestOnce(req.request, site, vm, 'vm-rebuild', () => {
      // A new VM on the substitute host: volume 12 from the software image, volume 13 from the data image.
      copyFileSync(images.software.file, this.volumeFile(site, v.softwareVolume));
      copyFileSync(images.data.file, this.volumeFile(site, v.dataVolume));
      this.state.clearVmFault(site, vm);
      this.state.setVmState(site, vm, 'running');
      this.state.setVmRuntime(site, vm, { host, busyUntil: new Date(Date.now() + ms).toISOString() });
      this.state.recordEvent(vm, 'vm-rebuild', {
        site,
        rung: req.rung,
        incident: req.incident,
        request: req.request,
        host,
        software: images.software.imageId,
        data: images.data.imageId,
      });
      return { host };
    });
  }

  async freezeGuest(
    site: string,
    vm: string,
    opts: { maxFreezeMs: number; drainTimeoutMs: number },
  ): Promise<{ frozenAt: string; thawBy: string }> {
    this.vm(site, vm);
    const frozenAt = new Date();
    const thawBy = new Date(frozenAt.getTime() + opts.maxFreezeMs);
    let inflight = this.state.guestFreeze(site, vm, thawBy);
    // As fsfreeze does: no new write begins, and the writes already in flight are waited for.
    const drainBy = Date.now() + opts.drainTimeoutMs;
    while (inflight > 0 && Date.now() < drainBy) {
      await new Promise((r) => setTimeout(r, 2));
      inflight = this.state.guestState(site, vm).inflight;
    }
    if (inflight > 0) {
      this.state.guestThaw(site, vm);
      throw new DeviceFaultError(
        vm,
        `the guest of ${vm} did not quiesce: ${inflight} write(s) still in flight after ${opts.drainTimeoutMs} ms; it was thawed — look at the guest, then back it up again`,
      );
    }
    this.state.recordEvent(vm, 'guest-frozen', { site, thawBy: thawBy.toISOString() });
    return { frozenAt: frozenAt.toISOString(), thawBy: thawBy.toISOString() };
  }

  async thawGuest(site: string, vm: string): Promise<{ wasFrozen: boolean }> {
    const wasFrozen = this.state.guestThaw(site, vm);
    this.state.recordEvent(vm, 'guest-thawed', { site, wasFrozen });
    return { wasFrozen };
  }

  async guestFrozen(site: string, vm: string): Promise<boolean> {
    return this.state.guestState(site, vm).frozenUntil !== null;
  }

  async describeDefinition(site: string, vm: string): Promise<VmDefinition> {
    const v = this.vm(site, vm);
    const volume = async (role: 'software' | 'data', ref: string) => {
      const [array, name] = ref.split('/') as [string, string];
      const sizeBytes = await sizeOf(this.volumeFile(site, ref));
      if (sizeBytes === undefined)
        throw new NotFoundError(`${vm}'s ${role} volume ${ref} has no file; the lab lost it`, { vm, volume: ref });
      return { role, array, volume: name, sizeBytes };
    };
    return {
      kind: 'kura-vm-definition',
      version: 1,
      site,
      name: vm,
      host: this.state.vmRuntime(site, vm).host ?? v.host,
      driver: 'lab',
      vcpus: null,
      memoryBytes: null,
      volumes: [await volume('software', v.softwareVolume), await volume('data', v.dataVolume)],
      health: { check: 'monitor', bootMs: this.loaded.config.lab.osReboot },
      describedAt: new Date().toISOString(),
    };
  }

  async createFromDefinition(
    definition: VmDefinition,
    target: { name: string; host: string; isolated?: boolean },
    images: RebuildImages,
    req: VmRequest,
  ): Promise<{ softwareVolume: string; dataVolume: string }> {
    const def = parseWith(VmDefinitionSchema, definition, 'VM definition');
    const site = def.site;
    if (!target.isolated) requireHost(findSite(this.loaded, site), target.host);
    // Under its own name the VM takes back its volumes; under a new one it gets volumes of its own
    // on the same arrays, so the original (if it still runs) is left alone.
    const place = (role: 'software' | 'data') => {
      const v = definitionVolume(def, role);
      const suffix = role === 'software' ? 'sw' : 'data';
      return `${v.array}/${target.name === def.name ? v.volume : `${target.name}-${suffix}`}`;
    };
    const softwareVolume = place('software');
    const dataVolume = place('data');
    requireImagesOf(def, images);
    if (target.isolated) return this.createOnDrillHost(def, target, images);
    const ms = def.health.bootMs ?? this.loaded.config.lab.osReboot;
    this.state.vmRequestOnce(req.request, site, target.name, 'vm-create', () => {
      for (const [ref, img] of [
        [softwareVolume, images.software],
        [dataVolume, images.data],
      ] as const) {
        const file = this.volumeFile(site, ref);
        mkdirSync(path.dirname(file), { recursive: true });
        copyFileSync(img.file, file);
      }
      this.state.putDefinedVm(site, target.name, {
        name: target.name,
        host: target.host,
        softwareVolume,
        dataVolume,
      } satisfies Vm);
      this.state.clearVmFault(site, target.name);
      this.state.setVmState(site, target.name, 'running');
      this.state.setVmRuntime(site, target.name, {
        host: target.host,
        busyUntil: new Date(Date.now() + ms).toISOString(),
      });
      this.state.recordEvent(target.name, 'vm-create', {
        site,
        rung: req.rung,
        incident: req.incident,
        request: req.request,
        host: target.host,
        from: def.name,
        software: images.software.imageId,
        data: images.data.imageId,
      });
      return { softwareVolume, dataVolume };
    });
    return { softwareVolume, dataVolume };
  }

  /**
   * A VM created on a drill's host of its own from a definition: its volumes, named as the
   * definition names them, are copies of the images inside the host's directory, and the host
   * starts it. The lab's state (production's VMs) is not touched; removing the host removes it.
   */
  private async createOnDrillHost(
    def: VmDefinition,
    target: { name: string; host: string },
    images: RebuildImages,
  ): Promise<{ softwareVolume: string; dataVolume: string }> {
    if (!this.paths)
      throw new InvalidInputError('the lab hypervisor was created without the lab paths; a drill host needs them');
    const hosts = new LabDrillHosts(this.loaded, this.paths);
    const dir = path.join(hosts.requireCreated(target.host), encodeURIComponent(target.name));
    const volumes: DrillVolume[] = [];
    const refs: string[] = [];
    for (const [role, img] of [
      ['software', images.software],
      ['data', images.data],
    ] as const) {
      const v = definitionVolume(def, role);
      const file = path.join(dir, encodeURIComponent(v.array), `${encodeURIComponent(v.volume)}.img`);
      await mkdir(path.dirname(file), { recursive: true });
      await copyFile(img.file, file);
      volumes.push({ file, sha256: img.sha256 });
      refs.push(`${v.array}/${v.volume}`);
    }
    await hosts.start(target.host, target.name, volumes, def.health.bootMs ?? undefined);
    return { softwareVolume: refs[0]!, dataVolume: refs[1]! };
  }

  private vm(site: string, vm: string): Vm {
    const s = findSite(this.loaded, site);
    // A VM recreated from its image's definition is known from then on, whatever kura.yaml says.
    const defined = this.state.definedVm(site, vm);
    if (defined !== undefined) return defined as Vm;
    const v = s.vms.find((x) => x.name === vm);
    if (!v) {
      const some = s.vms
        .slice(0, 3)
        .map((x) => x.name)
        .join(', ');
      throw new NotFoundError(`no VM "${vm}" in site ${site}${some ? ` (VMs include ${some})` : ''}`, { site, vm });
    }
    return v;
  }

  private volumeFile(site: string, ref: string): string {
    if (!this.paths)
      throw new InvalidInputError('the lab hypervisor was created without the lab paths; volume operations need them');
    const [array, volume] = ref.split('/') as [string, string];
    return labVolumePath(this.paths, site, array, volume);
  }

  /** Clears the VM's fault when an action of this depth cures it; returns whether it did. */
  private cureIf(site: string, vm: string, action: 'apl' | 'mw' | 'os' | 'data' | 'guarantee'): boolean {
    const fault = this.state.vmFault(site, vm);
    if (!fault || !cures(action, fault.curedBy)) return false;
    this.state.clearVmFault(site, vm);
    return true;
  }
}

/** A short stable tag of a request id, for file names. */
function tag(request: string): string {
  return sha256Hex(request).slice(0, 12);
}
