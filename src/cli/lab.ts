/**
 * `kura lab …`: create the embedded lab site from a preset, inject and clear device faults, and
 * read the lab's event log.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Command } from 'commander';
import { configPath, loadConfig, parseConfigText, type LoadedConfig } from '../config/load';
import { kuraPaths } from '../config/paths';
import { InvalidInputError, NotFoundError } from '../domain/errors';
import { DEFAULT_INSTALLATION } from '../domain/installation';
import { FaultKind, parseAfter, type Fault } from '../domain/faults';
import { formatBytes, parseSize } from '../domain/units';
import { createLabFiles } from '../lab/files';
import { HOSPITAL_ESTATE, presetByName, presetNames, renderConfigYaml } from '../lab/preset';
import { churnVolumes, setClientBusy } from '../lab/churn';
import { ensureKeyFile, keyFileOf } from '../codec/keys';
import { LabState } from '../lab/state';

interface GlobalOptions {
  config?: string;
  json?: boolean;
}

const MiB = 1024 * 1024;

/** Adds the `lab` command group to the `kura` program. */
export function registerLabCommands(program: Command): void {
  const lab = program.command('lab').description('the embedded lab site: simulated devices backed by real files');

  lab
    .command('init')
    .description('write kura.yaml from a preset and create the lab volumes and cartridges it describes')
    .option('--preset <name>', `preset to generate (${Object.values(presetNames).join(', ')})`, presetNames.hospital)
    .option('--vms <n>', 'number of VMs (hospital: 77)')
    .option('--volume-size <size>', 'size of each data volume, e.g. 8MiB; software volumes get half (hospital: 8MiB)')
    .option(
      '--force',
      'overwrite an existing configuration and recreate every lab file (erases what the cartridges hold)',
    )
    .option('--json', 'print the result as JSON only')
    .action(
      async (
        opts: { preset: string; vms?: string; volumeSize?: string; force?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        const json = opts.json === true || g.json === true;
        const file = configPath(g.config);
        if (existsSync(file) && opts.force !== true) {
          throw new InvalidInputError(
            `${file} already exists; \`kura lab init\` does not overwrite it without --force (which also recreates the lab's files, erasing the cartridges)`,
          );
        }
        const vms = opts.vms === undefined ? undefined : wholeNumber(opts.vms, '--vms');
        const dataSize = opts.volumeSize === undefined ? undefined : size(opts.volumeSize, '--volume-size');
        const cfg = presetByName(opts.preset, {
          ...HOSPITAL_ESTATE,
          ...(vms === undefined ? {} : { vms }),
          ...(dataSize === undefined
            ? {}
            : { dataVolumeSize: dataSize, softwareVolumeSize: Math.max(MiB, Math.floor(dataSize / 2)) }),
        });
        // Each estate gets its own installation, so two of them can share one Temporal server; a
        // forced re-init keeps the one it had, and with it the work its server already holds.
        const installation = (existsSync(file) ? keptInstallation(file) : undefined) ?? newInstallation();
        const { version, ...rest } = cfg;
        const text = renderConfigYaml({ version, installation, ...rest });
        // Validate before writing, so a bad option never leaves a broken kura.yaml behind.
        const loaded = parseConfigText(text, file);
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, text, 'utf8');
        // Encryption is on from the start: the preset names a key file; it is made once, never replaced.
        const keyFile = keyFileOf(loaded);
        if (keyFile) ensureKeyFile(keyFile);

        const paths = kuraPaths(loaded);
        const progress = json ? undefined : progressLine('creating lab files');
        const made = await createLabFiles(loaded, paths, {
          force: opts.force === true,
          ...(progress ? { onProgress: progress.update } : {}),
        });
        progress?.end();
        const state = new LabState(paths.labState);
        try {
          if (opts.force === true) state.clearDrives();
          state.recordEvent('lab', 'init', { preset: opts.preset, config: file, ...made });
        } finally {
          state.close();
        }

        const site = loaded.config.sites[0];
        const summary = {
          config: file,
          installation,
          lab: paths.lab,
          site: site?.name,
          vms: site?.vms.length ?? 0,
          volumesCreated: made.volumes,
          cartridgesCreated: made.cartridges,
          bytesWritten: made.bytes,
          filesKept: made.skipped,
        };
        if (json) {
          console.log(JSON.stringify(summary, null, 2));
          return;
        }
        const volumes = site?.arrays.reduce((n, a) => n + a.volumes.length, 0) ?? 0;
        const cartridges = site?.libraries.reduce((n, l) => n + l.cartridges.length, 0) ?? 0;
        const drives = site?.libraries.reduce((n, l) => n + l.drives.length, 0) ?? 0;
        console.log(
          `wrote ${file} (installation ${installation}): site ${site?.name}, ${summary.vms} VMs on ${site?.hosts.length ?? 0} hosts, ${volumes} volumes, ` +
            `${site?.libraries.length ?? 0} libraries with ${drives} drives and ${cartridges} cartridges, ${site?.servers.length ?? 0} backup servers`,
        );
        console.log(
          `created ${made.volumes} volume files and ${made.cartridges} cartridges (${formatBytes(made.bytes)}) under ${paths.lab}` +
            (made.skipped > 0 ? `; kept ${made.skipped} existing files` : ''),
        );
      },
    );

  const fault = lab.command('fault').description('inject device faults into the lab');

  fault
    .command('add <device>')
    .description('make a lab device fail, hang or slow down once a transfer reaches a point of the volume')
    .requiredOption('--kind <kind>', `${Object.values(FaultKind).join(' | ')}`)
    .requiredOption('--after <point>', 'volume byte or percentage where the fault starts: 0, 64MiB, 50%')
    .option('--rate <size>', 'throughput per second of a slow fault, e.g. 1MiB (default 1MiB)')
    .option('--once', 'the fault is consumed by the first transfer it hits')
    .option('--json', 'print the fault as JSON only')
    .action(
      async (
        device: string,
        opts: { kind: string; after: string; rate?: string; once?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        const loaded = loadConfig(configPath(g.config));
        requireDevice(loaded, device);
        const kinds: readonly string[] = Object.values(FaultKind);
        if (!kinds.includes(opts.kind)) {
          throw new InvalidInputError(`--kind "${opts.kind}" is not a fault kind; choose one of: ${kinds.join(', ')}`);
        }
        if (opts.rate !== undefined && opts.kind !== FaultKind.Slow) {
          throw new InvalidInputError(
            `--rate only applies to --kind slow, not ${opts.kind}; drop --rate or use --kind slow`,
          );
        }
        const rate = opts.rate === undefined ? undefined : size(opts.rate, '--rate');
        if (rate === 0) throw new InvalidInputError('--rate must be more than 0 bytes per second, e.g. 1MiB');
        const state = new LabState(kuraPaths(loaded).labState);
        try {
          const added = state.addFault({
            device,
            kind: opts.kind as FaultKind,
            after: parseAfter(opts.after),
            ...(rate === undefined ? {} : { rateBytesPerSec: rate }),
            once: opts.once === true,
          });
          if (opts.json === true || g.json === true) console.log(JSON.stringify(added, null, 2));
          else console.log(`added fault ${added.id}: ${describeFault(added)}`);
        } finally {
          state.close();
        }
      },
    );

  fault
    .command('list')
    .description('list the injected faults')
    .option('--json', 'print the faults as JSON only')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      await withState(g, (state) => {
        const faults = state.listFaults();
        if (opts.json === true || g.json === true) console.log(JSON.stringify(faults, null, 2));
        else if (faults.length === 0) console.log('no faults injected');
        else
          for (const f of faults)
            console.log(
              `${String(f.id).padStart(4)}  ${describeFault(f)}  (fired ${f.triggered}×, added ${f.createdAt})`,
            );
      });
    });

  fault
    .command('clear [device]')
    .description('remove the faults of one device, or all faults')
    .option('--json', 'print the result as JSON only')
    .action(async (device: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      await withState(g, (state) => {
        const cleared = state.clearFaults(device);
        if (opts.json === true || g.json === true) console.log(JSON.stringify({ cleared, device: device ?? null }));
        else
          console.log(
            `cleared ${cleared} fault${cleared === 1 ? '' : 's'}${device === undefined ? '' : ` on ${device}`}`,
          );
      });
    });

  lab
    .command('churn')
    .description("overwrite a share of the blocks of every class's volumes with new bytes, so incrementals have work")
    .requiredOption('--percent <p>', "share of each volume's blocks (of the store's chunk size) to change, 0–100")
    .option('--json', 'print what changed as JSON only')
    .action(async (opts: { percent: string; json?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const percent = Number(opts.percent);
      if (opts.percent.trim() === '' || !Number.isFinite(percent) || percent < 0 || percent > 100)
        throw new InvalidInputError(`--percent must be a number from 0 to 100, not "${opts.percent}"`);
      const loaded = loadConfig(configPath(g.config));
      const r = await churnVolumes(loaded, kuraPaths(loaded), percent);
      if (opts.json === true || g.json === true) {
        console.log(JSON.stringify(r));
        return;
      }
      for (const v of r.volumes) console.log(`${v.target.padEnd(18)} ${v.blocks.length} of ${v.totalBlocks} blocks`);
      console.log(
        `changed ${formatBytes(r.bytes)} in ${r.volumes.length} volume(s) (${percent}% of blocks of ${formatBytes(r.blockSize)})`,
      );
    });

  lab
    .command('client-busy <client>')
    .description('mark a special client busy at its medical device (its backups are skipped and reported), or free')
    .option('--reason <text>', 'what it is busy with', 'in use at its device')
    .option('--clear', 'the client is free again')
    .action(async (client: string, opts: { reason: string; clear?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const loaded = loadConfig(configPath(g.config));
      const target = loaded.config.classes.client?.targets.find((t) => t.name === client);
      if (!target)
        throw new NotFoundError(
          `${loaded.file} has no special client "${client}" under classes.client.targets; the classes section of kura.yaml lists them`,
        );
      const site = target.site ?? loaded.config.sites[0]?.name ?? '';
      await setClientBusy(kuraPaths(loaded), site, client, opts.clear === true ? null : opts.reason);
      console.log(opts.clear === true ? `${client} is free` : `${client} is busy: ${opts.reason}`);
    });

  lab
    .command('events')
    .description("show the lab's event log (loads, copies, faults)")
    .option('--device <name>', 'only events of this device')
    .option('--event <name>', 'only events of this kind, e.g. fault-fail')
    .option('--since <seq>', 'only events after this sequence number')
    .option('--json', 'print the events as JSON only')
    .action(async (opts: { device?: string; event?: string; since?: string; json?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const since = opts.since === undefined ? undefined : wholeNumber(opts.since, '--since', 0);
      await withState(g, (state) => {
        const events = state.events({
          ...(opts.device === undefined ? {} : { device: opts.device }),
          ...(opts.event === undefined ? {} : { event: opts.event }),
          ...(since === undefined ? {} : { since }),
        });
        if (opts.json === true || g.json === true) {
          console.log(JSON.stringify(events, null, 2));
          return;
        }
        if (events.length === 0) console.log('no events');
        for (const e of events)
          console.log(
            `${String(e.seq).padStart(6)}  ${e.at}  ${e.device.padEnd(14)} ${e.event.padEnd(18)} ${JSON.stringify(e.detail)}`,
          );
      });
    });
}

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

async function withState(g: GlobalOptions, use: (state: LabState) => void): Promise<void> {
  const loaded = loadConfig(configPath(g.config));
  const state = new LabState(kuraPaths(loaded).labState);
  try {
    use(state);
  } finally {
    state.close();
  }
}

/** Faults may be placed on any device a stream can cross; NotFoundError shows some real names. */
function requireDevice(loaded: LoadedConfig, device: string): void {
  const names: string[] = [];
  for (const s of loaded.config.sites) {
    names.push(
      ...s.servers.map((x) => x.name),
      ...s.libraries.map((x) => x.name),
      ...s.libraries.flatMap((l) => l.drives.map((d) => d.id)),
      ...s.libraries.flatMap((l) => l.cartridges.map((c) => c.id)),
      ...s.switches.map((x) => x.name),
      ...s.copyDevices.map((x) => x.name),
      ...s.arrays.map((x) => x.name),
    );
  }
  if (names.includes(device)) return;
  const first = loaded.config.sites[0];
  const examples = first
    ? [
        first.servers[0]?.name,
        first.libraries[0]?.name,
        first.libraries[0]?.drives[0]?.id,
        first.libraries[0]?.cartridges[0]?.id,
        first.switches[0]?.name,
        first.copyDevices[0]?.name,
        first.arrays[0]?.name,
      ]
    : [];
  throw new NotFoundError(
    `no device "${device}" in ${loaded.file}; faults go on a backup server, library, drive, tape, FC switch, copy device or array, e.g. ${examples.filter((x) => x !== undefined).join(', ')}`,
    { device },
  );
}

function describeFault(f: Fault): string {
  const at = 'bytes' in f.after ? `volume byte ${f.after.bytes}` : `${f.after.percent}% of the volume`;
  const rate = f.kind === FaultKind.Slow ? ` at ${formatBytes(f.rateBytesPerSec ?? MiB)}/s` : '';
  return `${f.kind}${rate} on ${f.device} from ${at}${f.once ? ', once' : ', until cleared'}`;
}

function wholeNumber(text: string, flag: string, min = 1): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new InvalidInputError(`${flag} "${text}" must be a whole number of at least ${min}`);
  }
  return n;
}

function size(text: string, flag: string): number {
  const n = parseSize(text);
  if (n === undefined)
    throw new InvalidInputError(
      `${flag} "${text}" is not a size; write bytes or a number with a unit, e.g. 8MiB or 1GB`,
    );
  return n;
}

/** A one-line progress display on stderr when it is a terminal; silent otherwise (logs, pipes). */
function progressLine(label: string): { update: (done: number, total: number) => void; end: () => void } | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  let shown = false;
  return {
    update: (done, total) => {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      shown = true;
      const pct = total === 0 ? 100 : Math.floor((done / total) * 100);
      process.stderr.write(`\r${label} ${String(pct).padStart(3)}%  ${formatBytes(done)} of ${formatBytes(total)}   `);
    },
    end: () => {
      if (shown) process.stderr.write('\n');
    },
  };
}

/** A new installation id: 8 random hex digits, enough that two estates on one server never draw the same. */
function newInstallation(): string {
  return randomBytes(4).toString('hex');
}

/** The installation of an existing kura.yaml, when it names one and still validates. */
function keptInstallation(file: string): string | undefined {
  try {
    const { installation } = loadConfig(file).config;
    return installation === DEFAULT_INSTALLATION ? undefined : installation;
  } catch {
    return undefined;
  }
}
