/**
 * A real hypervisor driver: libvirt through `virsh`, QEMU volumes through `qemu-img`. APL and MW
 * restarts go through the QEMU guest agent (`guest-exec` of `systemctl restart <unit>`), the OS
 * reboot through libvirt, the data swap is a detach/attach of the data disk, and a new volume from
 * an image is a qcow2 overlay whose backing file is the image (created at once, whatever its size).
 * Every command is an argument array. Which parts libvirt's `test:///` hypervisor can run, and
 * which need a real host, is said in the README.
 */
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { LoadedConfig } from '../../config/load';
import { findSite, requireHost } from '../../config/targets';
import { z } from 'zod';
import { ChecksumMismatchError, DeviceFaultError, NotFoundError } from '../../domain/errors';
import type { Vm } from '../../domain/inventory';
import type { RestartScope } from '../../domain/ladder';
import { VmDefinitionSchema, type VmDefinition } from '../../domain/vm-image';
import { parseWith } from '../../domain/validate';
import { sha256File } from '../../datamover/files';
import { sha256Hex } from '../../datamover/sha256';
import type { HypervisorDriver, ImageRef, ProgressFn, RebuildImages, VmHealth, VmInfo, VmRequest } from '../types';
import { requireImagesOf } from '../rebuild-images';
import { execRunner, runTool, type Runner } from './run';

export interface LibvirtOptions {
  /** The libvirt connection URI of the VMs' hosts, e.g. `qemu:///system` or `test:///default`. */
  uri: string;
  /** The connection URI of a substitute host for a rebuild (default `qemu+ssh://<host>/system`). */
  hostUri?: (host: string) => string;
  /** The libvirt domain of a VM (default: the VM's name). */
  domainOf?: (vm: string) => string;
  /** Disk targets of the software volume (12) and the data volume (13). */
  softwareTarget?: string;
  dataTarget?: string;
  /** systemd units the guest agent restarts for the APL and MW ranges. */
  units?: { apl: string; mw: string };
  /** `agent`: running and the guest agent answers `guest-ping`; `state`: running is enough. */
  healthCheck?: 'agent' | 'state';
  /** Where new volumes (overlays) and the journal of requests carried out are kept. */
  stateDir: string;
  /** Where each VM's base images lie: `<dir>/<vm>-software.img` and `<dir>/<vm>-guarantee.img`. */
  baseImageDir: string;
  virsh?: string;
  qemuImg?: string;
  run?: Runner;
  /** The domain type of VMs it defines (`kvm`; libvirt's test hypervisor takes only `test`). */
  domainType?: string;
}

/** What `createFromDefinition` keeps of a VM it created, so its health and its removal find it. */
const CreatedSchema = z.object({
  name: z.string().min(1),
  host: z.string().min(1),
  uri: z.string().min(1),
  site: z.string().min(1),
  from: z.string().min(1),
  isolated: z.boolean(),
  softwareVolume: z.string().min(1),
  dataVolume: z.string().min(1),
});
type Created = z.infer<typeof CreatedSchema>;

/** HypervisorDriver over libvirt and qemu-img. */
export class LibvirtHypervisor implements HypervisorDriver {
  private readonly run: Runner;
  private readonly virshBin: string;
  private readonly qemuImg: string;
  private readonly dataTarget: string;
  private readonly softwareTarget: string;

  constructor(
    private readonly loaded: LoadedConfig,
    private readonly opts: LibvirtOptions,
  ) {
    this.run = opts.run ?? execRunner;
    this.virshBin = opts.virsh ?? 'virsh';
    this.qemuImg = opts.qemuImg ?? 'qemu-img';
    this.dataTarget = opts.dataTarget ?? 'vdb';
    this.softwareTarget = opts.softwareTarget ?? 'vda';
  }

  async describeVm(site: string, vm: string): Promise<VmInfo> {
    const v = this.vm(site, vm);
    const state = (await this.virsh(vm, ['domstate', this.domain(vm)], `reading the state of ${vm}`)).stdout.trim();
    return {
      site,
      vm,
      host: v.host,
      state: state === 'running' ? 'running' : 'stopped',
      softwareVolume: v.softwareVolume,
      dataVolume: v.dataVolume,
    };
  }

  async listVms(site: string): Promise<VmInfo[]> {
    return Promise.all(findSite(this.loaded.config, site).vms.map((v) => this.describeVm(site, v.name)));
  }

  /** The disks of the domain: target → source file. */
  async disks(vm: string): Promise<Record<string, string>> {
    const out = (await this.virsh(vm, ['domblklist', this.domain(vm), '--details'], `listing the disks of ${vm}`))
      .stdout;
    const disks: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const cols = line.trim().split(/\s+/);
      if (cols.length >= 4 && cols[1] === 'disk') disks[cols[2] as string] = cols.slice(3).join(' ');
    }
    return disks;
  }

  async health(site: string, vm: string): Promise<VmHealth> {
    this.vm(site, vm);
    const state = (await this.virsh(vm, ['domstate', this.domain(vm)], `reading the state of ${vm}`)).stdout.trim();
    if (state !== 'running') return { healthy: false, state: 'stopped', detail: `${vm} is ${state}` };
    if ((this.opts.healthCheck ?? 'agent') === 'state')
      return { healthy: true, state: 'running', detail: `${vm} is running` };
    try {
      await this.virsh(
        vm,
        ['qemu-agent-command', this.domain(vm), JSON.stringify({ execute: 'guest-ping' })],
        `pinging the guest agent of ${vm}`,
      );
      return { healthy: true, state: 'running', detail: `${vm} is running and its guest agent answers` };
    } catch (err) {
      return { healthy: false, state: 'faulty', detail: err instanceof Error ? err.message : String(err) };
    }
  }

  async restart(site: string, vm: string, scope: RestartScope, req: VmRequest): Promise<void> {
    this.vm(site, vm);
    await this.once(req, async () => {
      if (scope === 'os') {
        await this.virsh(vm, ['reboot', this.domain(vm)], `rebooting ${vm}`);
        return;
      }
      const unit = (this.opts.units ?? { apl: 'kura-apl.service', mw: 'kura-mw.service' })[scope];
      const command = {
        execute: 'guest-exec',
        arguments: { path: '/usr/bin/systemctl', arg: ['restart', unit], 'capture-output': true },
      };
      await this.virsh(
        vm,
        ['qemu-agent-command', this.domain(vm), JSON.stringify(command)],
        `restarting ${unit} in ${vm} through the guest agent (needs a real host with qemu-guest-agent)`,
      );
    });
  }

  async snapshotDataVolume(
    site: string,
    vm: string,
    dest: string,
    _onProgress: ProgressFn,
  ): Promise<{ sizeBytes: number; sha256: string }> {
    this.vm(site, vm);
    const source = await this.disk(vm, this.dataTarget);
    // On a running guest the agent should freeze the file systems first (guest-fsfreeze-freeze),
    // which needs a real host.
    return this.rawCopy(vm, source, dest, `imaging the data volume of ${vm}`);
  }

  async writeBaseImage(
    site: string,
    vm: string,
    kind: 'software' | 'guarantee',
    dest: string,
    _onProgress: ProgressFn,
  ): Promise<{ sizeBytes: number; sha256: string }> {
    this.vm(site, vm);
    const source = path.join(this.opts.baseImageDir, `${vm}-${kind}.img`);
    if (!existsSync(source))
      throw new NotFoundError(`no ${kind} image of ${vm} at ${source}; place the image the VM was created from there`, {
        vm,
        kind,
        file: source,
      });
    return this.rawCopy(vm, source, dest, `copying the ${kind} image of ${vm}`);
  }

  /** A qcow2 overlay at `file` that starts empty and reads through to the image: a volume "from the image" at once. */
  private async overlay(vm: string, image: ImageRef, file: string): Promise<void> {
    await runTool(
      this.run,
      vm,
      this.qemuImg,
      ['create', '-f', 'qcow2', '-b', image.file, '-F', 'raw', file],
      `creating a volume for ${vm} from image ${image.imageId}`,
    );
  }

  /** A raw copy of `source`, whatever the disk's format, at `dest`; returns its size and SHA-256. */
  private async rawCopy(
    vm: string,
    source: string,
    dest: string,
    doing: string,
  ): Promise<{ sizeBytes: number; sha256: string }> {
    await mkdir(path.dirname(dest), { recursive: true });
    await runTool(this.run, vm, this.qemuImg, ['convert', '-O', 'raw', source, dest], doing);
    return this.rawInfo(vm, dest);
  }

  async createVolumeFromImage(
    site: string,
    vm: string,
    image: ImageRef,
    req: VmRequest,
    _onProgress?: ProgressFn,
  ): Promise<{ volume: string; sizeBytes: number }> {
    this.vm(site, vm);
    const volume = path.join(this.opts.stateDir, 'volumes', `${vm}-data-${tag(req.request)}.qcow2`);
    if (existsSync(volume)) {
      const info = await this.imageInfo(vm, volume);
      if (info['backing-filename'] === image.file) return { volume, sizeBytes: image.sizeBytes };
    }
    if ((await sha256File(image.file)) !== image.sha256) {
      throw new ChecksumMismatchError(
        `image ${image.imageId} at ${image.file} does not hash as recorded; it is not used`,
        { imageId: image.imageId },
      );
    }
    await mkdir(path.dirname(volume), { recursive: true });
    await this.overlay(vm, image, volume);
    return { volume, sizeBytes: image.sizeBytes };
  }

  async swapDataVolume(
    site: string,
    vm: string,
    volume: string,
    _image: ImageRef,
    req: VmRequest,
  ): Promise<{ retired: string }> {
    this.vm(site, vm);
    const retired = await this.disk(vm, this.dataTarget).catch(() => '');
    await this.once(req, async () => {
      const dom = this.domain(vm);
      await this.virsh(
        vm,
        ['detach-disk', dom, this.dataTarget, '--live', '--config'],
        `detaching the data volume of ${vm} (needs a real host)`,
      );
      await this.virsh(
        vm,
        [
          'attach-disk',
          dom,
          volume,
          this.dataTarget,
          '--driver',
          'qemu',
          '--subdriver',
          'qcow2',
          '--targetbus',
          'virtio',
          '--live',
          '--config',
        ],
        `attaching the new data volume of ${vm}`,
      );
    });
    return { retired };
  }

  async rebuild(site: string, vm: string, host: string, images: RebuildImages, req: VmRequest): Promise<void> {
    this.vm(site, vm);
    requireHost(findSite(this.loaded.config, site), host);
    const uri = this.hostUri(host);
    const dir = path.join(this.opts.stateDir, 'rebuilt', vm);
    await mkdir(dir, { recursive: true });
    const software = path.join(dir, `${vm}-software-${tag(req.request)}.qcow2`);
    const data = path.join(dir, `${vm}-data-${tag(req.request)}.qcow2`);
    await this.once(req, async () => {
      for (const [img, file] of [
        [images.software, software],
        [images.data, data],
      ] as const) {
        if (!existsSync(file)) await this.overlay(vm, img, file);
      }
      const xmlFile = path.join(dir, `${vm}.xml`);
      await writeFile(
        xmlFile,
        domainXml(this.domain(vm), software, data, { software: this.softwareTarget, data: this.dataTarget }),
        'utf8',
      );
      await runTool(this.run, vm, this.virshBin, ['-c', uri, 'define', xmlFile], `defining ${vm} on ${host}`);
      await runTool(this.run, vm, this.virshBin, ['-c', uri, 'start', this.domain(vm)], `starting ${vm} on ${host}`);
    });
  }

  /**
   * Recreates a VM from an image's definition: a domain of the definition's vCPUs and memory named
   * `target.name`, on the connection of `target.host`, whose software and data disks (on the
   * driver's software and data targets) are qcow2 overlays over the images, defined and started.
   * A record under `stateDir` lets {@link health} find it and {@link removeCreated} remove it; an
   * isolated one (a drill's) is kept apart, so it never stands in for a production VM of its name.
   */
  async createFromDefinition(
    definition: VmDefinition,
    target: { name: string; host: string; isolated?: boolean },
    images: RebuildImages,
    req: VmRequest,
  ): Promise<{ softwareVolume: string; dataVolume: string }> {
    const def = parseWith(VmDefinitionSchema, definition, 'VM definition');
    if (!target.isolated) requireHost(findSite(this.loaded.config, def.site), target.host);
    requireImagesOf(def, images);
    const name = target.name;
    const dir = this.createdDir(target);
    const uri = this.hostUri(target.host);
    const created: Created = {
      name,
      host: target.host,
      uri,
      site: def.site,
      from: def.name,
      isolated: target.isolated ?? false,
      softwareVolume: path.join(dir, `software-${tag(req.request)}.qcow2`),
      dataVolume: path.join(dir, `data-${tag(req.request)}.qcow2`),
    };
    await this.once(req, async () => {
      await mkdir(dir, { recursive: true });
      for (const [img, file] of [
        [images.software, created.softwareVolume],
        [images.data, created.dataVolume],
      ] as const) {
        if (!existsSync(file)) await this.overlay(name, img, file);
      }
      const xmlFile = path.join(dir, 'domain.xml');
      await writeFile(
        xmlFile,
        domainXml(
          name,
          created.softwareVolume,
          created.dataVolume,
          { software: this.softwareTarget, data: this.dataTarget },
          this.opts.domainType ?? 'kvm',
          {
            vcpus: def.vcpus,
            memoryBytes: def.memoryBytes,
            from: { name: def.name, site: def.site, describedAt: def.describedAt },
          },
        ),
        'utf8',
      );
      await writeFile(path.join(dir, 'created.json'), JSON.stringify(created));
      await runTool(
        this.run,
        name,
        this.virshBin,
        ['-c', uri, 'define', xmlFile],
        `defining ${name} on ${target.host}`,
      );
      // A retry after the start went through finds it running: starting it again would fail.
      const state = await runTool(this.run, name, this.virshBin, ['-c', uri, 'domstate', name], `reading ${name}`);
      if (state.stdout.trim() !== 'running')
        await runTool(this.run, name, this.virshBin, ['-c', uri, 'start', name], `starting ${name} on ${target.host}`);
    });
    return { softwareVolume: created.softwareVolume, dataVolume: created.dataVolume };
  }

  /**
   * Removes a VM {@link createFromDefinition} created: stopped (`destroy`), undefined, and its
   * overlays and record deleted. Idempotent; a VM this driver did not create is never touched.
   */
  async removeCreated(target: { name: string; host: string; isolated?: boolean }): Promise<{ removed: boolean }> {
    const dir = this.createdDir(target);
    const text = await readFile(path.join(dir, 'created.json'), 'utf8').catch(() => undefined);
    if (text === undefined) return { removed: false };
    const c = parseWith(
      CreatedSchema,
      JSON.parse(text) as unknown,
      `record of ${target.name} created from a definition`,
    );
    const state = await runTool(this.run, c.name, this.virshBin, ['-c', c.uri, 'domstate', c.name], `reading ${c.name}`)
      .then((r) => r.stdout.trim())
      .catch(() => undefined);
    if (state !== undefined) {
      if (state !== 'shut off')
        await runTool(this.run, c.name, this.virshBin, ['-c', c.uri, 'destroy', c.name], `stopping ${c.name}`);
      await runTool(this.run, c.name, this.virshBin, ['-c', c.uri, 'undefine', c.name], `undefining ${c.name}`);
    }
    await rm(dir, { recursive: true, force: true });
    return { removed: true };
  }

  /**
   * Freezes the guest's file systems through its agent (`virsh domfsfreeze`, the agent draining
   * writes in flight). libvirt has no freeze with a deadline, so the bound is kept here: the freeze
   * is recorded with its `thawBy` under `stateDir`, `guestFrozen` answers false past it, and the
   * caller's release thaws (`domfsthaw`) whatever happened.
   */
  async freezeGuest(
    site: string,
    vm: string,
    opts: { maxFreezeMs: number; drainTimeoutMs: number },
  ): Promise<{ frozenAt: string; thawBy: string }> {
    this.vm(site, vm);
    const frozenAt = new Date();
    const thawBy = new Date(frozenAt.getTime() + opts.maxFreezeMs);
    await this.virsh(
      vm,
      ['domfsfreeze', this.domain(vm)],
      `freezing the file systems of ${vm} (needs its guest agent)`,
    );
    await mkdir(path.dirname(this.freezeFile(vm)), { recursive: true });
    await writeFile(
      this.freezeFile(vm),
      JSON.stringify({ frozenAt: frozenAt.toISOString(), thawBy: thawBy.toISOString() }),
    );
    return { frozenAt: frozenAt.toISOString(), thawBy: thawBy.toISOString() };
  }

  async thawGuest(site: string, vm: string): Promise<{ wasFrozen: boolean }> {
    this.vm(site, vm);
    const wasFrozen = await this.guestFrozen(site, vm);
    await this.virsh(vm, ['domfsthaw', this.domain(vm)], `thawing the file systems of ${vm}`);
    await rm(this.freezeFile(vm), { force: true });
    return { wasFrozen };
  }

  async guestFrozen(site: string, vm: string): Promise<boolean> {
    this.vm(site, vm);
    const text = await readFile(this.freezeFile(vm), 'utf8').catch(() => undefined);
    if (text === undefined) return false;
    const { thawBy } = JSON.parse(text) as { thawBy?: string };
    return thawBy !== undefined && Date.parse(thawBy) > Date.now();
  }

  /** The VM's definition: vCPUs and memory from `virsh dominfo`, its two volumes' sizes from `qemu-img info`. */
  async describeDefinition(site: string, vm: string): Promise<VmDefinition> {
    const v = this.vm(site, vm);
    const info = (await this.virsh(vm, ['dominfo', this.domain(vm)], `reading the definition of ${vm}`)).stdout;
    const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(info)?.[1]?.trim();
    const vcpus = Number(field('CPU\\(s\\)'));
    const memKiB = Number(/^(\d+)/.exec(field('Max memory') ?? '')?.[1]);
    const volume = async (role: 'software' | 'data', ref: string, target: string) => {
      const [array = '', name = ''] = ref.split('/');
      const file = await this.disk(vm, target);
      return { role, array, volume: name, sizeBytes: Number((await this.imageInfo(vm, file))['virtual-size']) };
    };
    return {
      kind: 'kura-vm-definition',
      version: 1,
      site,
      name: vm,
      host: v.host,
      driver: 'libvirt',
      vcpus: Number.isInteger(vcpus) && vcpus > 0 ? vcpus : null,
      memoryBytes: Number.isInteger(memKiB) && memKiB > 0 ? memKiB * 1024 : null,
      volumes: [
        await volume('software', v.softwareVolume, this.softwareTarget),
        await volume('data', v.dataVolume, this.dataTarget),
      ],
      health: { check: (this.opts.healthCheck ?? 'agent') === 'agent' ? 'agent' : 'state', bootMs: null },
      describedAt: new Date().toISOString(),
    };
  }

  /** The connection URI of a host (a substitute host, or a drill's). */
  private hostUri(host: string): string {
    return (this.opts.hostUri ?? ((h: string) => `qemu+ssh://${h}/system`))(host);
  }

  /** Where a VM created from a definition keeps its overlays and record; an isolated one apart. */
  private createdDir(target: { name: string; host: string; isolated?: boolean }): string {
    return target.isolated
      ? path.join(this.opts.stateDir, 'isolated', encodeURIComponent(target.host), encodeURIComponent(target.name))
      : path.join(this.opts.stateDir, 'created', encodeURIComponent(target.name));
  }

  /** A VM created from a definition under this name (not an isolated one), if there is one. */
  private created(vm: string): Created | undefined {
    const file = path.join(this.createdDir({ name: vm, host: '' }), 'created.json');
    if (!existsSync(file)) return undefined;
    return parseWith(CreatedSchema, JSON.parse(readFileSync(file, 'utf8')) as unknown, `record of ${vm}`);
  }

  private freezeFile(vm: string): string {
    return path.join(this.opts.stateDir, 'frozen', `${encodeURIComponent(vm)}.json`);
  }

  private async virsh(vm: string, args: string[], what: string) {
    // A VM created from a definition runs on the host it was created on.
    const uri = this.created(vm)?.uri ?? this.opts.uri;
    return runTool(this.run, vm, this.virshBin, ['-c', uri, ...args], what);
  }

  private async disk(vm: string, target: string): Promise<string> {
    const disks = await this.disks(vm);
    const source = disks[target];
    if (!source)
      throw new DeviceFaultError(
        vm,
        `${vm} has no disk ${target} (disks: ${Object.keys(disks).join(', ') || 'none'}); set the driver's dataTarget/softwareTarget`,
      );
    return source;
  }

  private async imageInfo(vm: string, file: string): Promise<Record<string, unknown>> {
    const out = await runTool(this.run, vm, this.qemuImg, ['info', '--output=json', file], `reading ${file}`);
    return JSON.parse(out.stdout) as Record<string, unknown>;
  }

  private async rawInfo(vm: string, file: string): Promise<{ sizeBytes: number; sha256: string }> {
    const info = await this.imageInfo(vm, file);
    return { sizeBytes: Number(info['virtual-size']), sha256: await sha256File(file) };
  }

  /**
   * Carries out a request once: a journal under `stateDir` lists the requests done, so a retried
   * activity does not reboot a VM a second time. (An action that succeeded just before its worker
   * died is repeated; libvirt offers no request ids to close that gap.)
   */
  private async once(req: VmRequest, perform: () => Promise<void>): Promise<void> {
    const journal = path.join(this.opts.stateDir, 'requests.log');
    const done = await readFile(journal, 'utf8').catch(() => '');
    if (done.split('\n').includes(req.request)) return;
    await perform();
    await mkdir(this.opts.stateDir, { recursive: true });
    await appendFile(journal, `${req.request}\n`, 'utf8');
  }

  private domain(vm: string): string {
    if (this.created(vm)) return vm;
    return this.opts.domainOf ? this.opts.domainOf(vm) : vm;
  }

  private vm(site: string, vm: string): Vm {
    const v = findSite(this.loaded.config, site).vms.find((x) => x.name === vm);
    if (v) return v;
    // A VM recreated from its image's definition is known from then on, whatever kura.yaml says.
    const c = this.created(vm);
    if (c && c.site === site)
      return { name: c.name, host: c.host, softwareVolume: c.softwareVolume, dataVolume: c.dataVolume };
    throw new NotFoundError(`no VM "${vm}" in site ${site}`, { site, vm });
  }
}

/** The domain XML of a VM recreated from its two volumes (software on the first disk, data on the second). */
export function domainXml(
  name: string,
  software: string,
  data: string,
  targets: { software: string; data: string },
  type = 'kvm',
  shape: {
    vcpus?: number | null;
    memoryBytes?: number | null;
    /** The definition it was created from, kept in the domain's metadata. */
    from?: { name: string; site: string; describedAt: string };
  } = {},
): string {
  const esc = (s: string) =>
    s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');
  const memory =
    shape.memoryBytes === undefined || shape.memoryBytes === null
      ? `<memory unit='MiB'>2048</memory>`
      : `<memory unit='KiB'>${Math.ceil(shape.memoryBytes / 1024)}</memory>`;
  const from = shape.from;
  return [
    `<domain type='${esc(type)}'>`,
    `  <name>${esc(name)}</name>`,
    ...(from
      ? [
          `  <metadata><kura:definition xmlns:kura='https://kura.example/xmlns/vm-definition/1' from='${esc(from.name)}' site='${esc(from.site)}' described-at='${esc(from.describedAt)}' software='${esc(targets.software)}' data='${esc(targets.data)}'/></metadata>`,
        ]
      : []),
    `  ${memory}`,
    `  <vcpu>${shape.vcpus ?? 2}</vcpu>`,
    `  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>`,
    `  <devices>`,
    `    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${esc(software)}'/><target dev='${esc(targets.software)}' bus='virtio'/></disk>`,
    `    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${esc(data)}'/><target dev='${esc(targets.data)}' bus='virtio'/></disk>`,
    `    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`,
    `  </devices>`,
    `</domain>`,
    '',
  ].join('\n');
}

function tag(request: string): string {
  return sha256Hex(request).slice(0, 12);
}
