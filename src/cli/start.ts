/**
 * `kura start` (what `npm start` runs): bring up the embedded stack — the lab estate if there is no
 * configuration yet, the Temporal dev server unless one is configured or already answers, the
 * workers — then do the main job: back up the data volume of every VM once, now, a bounded number
 * at a time, with progress and a summary. Then serve until Ctrl-C and shut everything down.
 *
 * A stop (SIGINT, SIGTERM, SIGHUP) is orderly in every phase: the progress display, then the workers,
 * then the server this process started. The main job is a fleet run in Temporal: it outlives the
 * stop, and the next start picks it up instead of starting another.
 */
import { existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { loadConfig } from '../config/load';
import { kuraPaths } from '../config/paths';
import { findSite } from '../config/targets';
import { InvalidInputError, KuraError, ErrorType } from '../domain/errors';
import type { FleetProgress, FleetReport } from '../domain/fleet';
import { formatBytes } from '../domain/units';
import { HOSPITAL_ESTATE, hospitalPreset, renderConfigYaml } from '../lab/preset';
import { createLabFiles } from '../lab/files';
import { fleetProgressQuery } from '../messages';
import { temporalConnectionOptions } from '../stack/connection';
import { serverAnswers, startDevServer, type DevServer } from '../stack/devserver';
import { ensureNexusEndpoint } from '../stack/nexus-endpoint';
import { kuraNexusEndpoint } from '../api/nexus-service';
import { SHUTDOWN_GRACE_SECONDS, startKuraWorkers, type KuraWorkers } from '../worker';
import { startDatapath, type DatapathService } from '../datapath/service';
import { Kura } from '../client';
import { ensureKeyFile, keyFileOf } from '../codec/keys';
import { kuraPayloadCodecs } from '../codec/data-converter';
import { searchAttributeLabels, type Labels } from '../codec/labels';
import { startCodecServer, type CodecServer } from '../codec/codec-server';
import { watchFleet } from './progress';
import type { CliContext } from './context';

/** The fleet policy `kura start` runs: every VM of the site. */
const POLICY = 'all';

/** The exit code of a start interrupted before its main job ended (128 + SIGINT, as shells report it). */
const INTERRUPTED_EXIT = 130;

export function registerStartCommand(program: Command, ctx: CliContext): void {
  program
    .command('start')
    .description('bring up the embedded stack and back up every VM of the estate once, then serve until Ctrl-C')
    .option('--exit-after', 'shut down after the main job instead of serving (also KURA_EXIT_AFTER_START=1)')
    .option('--concurrency <n>', 'backups running at once', '4')
    .option('--vms <n>', 'VMs of the lab estate when it is created', '77')
    .option('--temporal-port <n>', 'port of the embedded Temporal dev server (its Web UI on n+1000)', '7233')
    .action(async (o: StartOptions) => {
      const stop = listenForStop();
      try {
        await start(o, ctx, stop);
      } finally {
        stop.dispose();
      }
    });
}

interface StartOptions {
  exitAfter?: boolean;
  concurrency: string;
  vms: string;
  temporalPort: string;
}

type Phase = 'setup' | 'main job' | 'serving';

async function start(o: StartOptions, ctx: CliContext, stop: StopListener): Promise<void> {
  const concurrency = Number(o.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 200)
    throw new InvalidInputError(`--concurrency must be a whole number from 1 to 200, not "${o.concurrency}"`);
  const port = Number(o.temporalPort);
  if (!Number.isInteger(port) || port < 1 || port > 64535)
    throw new InvalidInputError(`--temporal-port must be a port number from 1 to 64535, not "${o.temporalPort}"`);
  const localAddress = `127.0.0.1:${port}`;
  const say = (s: string) => process.stderr.write(`${s}\n`);
  // A closed terminal (SIGHUP) must not turn the stop into a crash on the next line printed.
  process.stderr.on('error', () => undefined);

  // What runs so far, and so what a stop has to stop, in this order.
  let phase: Phase = 'setup';
  let watching = false;
  let workers: KuraWorkers | undefined;
  let datapath: DatapathService | undefined;
  let server: DevServer | undefined;
  let codecServer: CodecServer | undefined;
  stop.onFirst((sig) => {
    const parts = [
      watching ? 'the progress display' : '',
      workers
        ? phase === 'main job'
          ? `the workers (a copy in progress gets ${SHUTDOWN_GRACE_SECONDS} s to finish its piece; the backups continue at the next start)`
          : 'the workers'
        : '',
      server ? `the Temporal dev server (pid ${server.pid})` : '',
    ].filter((p) => p !== '');
    const when = phase === 'setup' ? 'during start-up' : phase === 'main job' ? 'during the backups' : 'while serving';
    say(
      `kura: ${sig} received ${when}: stopping ${parts.length > 0 ? parts.join(', then ') : 'the start-up'} — repeat it to stop at once`,
    );
  });
  stop.onAgain((sig) => {
    // The dev server is killed by pid on the way out (see startDevServer); its SQLite state survives
    // a kill (docs/adr/005), and Temporal keeps every job for the next start.
    say(`kura: ${sig} received again: stopping at once; the jobs continue at the next start`);
    process.exit(INTERRUPTED_EXIT);
  });
  const checkStop = () => {
    if (stop.signal.aborted) throw stop.signal.reason;
  };
  // The workers stopping by themselves (a fatal worker error) ends the wait for the main job or the
  // stop, as a failure.
  const failure = new AbortController();
  const until = AbortSignal.any([stop.signal, failure.signal]);

  /** Stops what runs, in order; no client call is made after its connection is closed. */
  const shutdown = async () => {
    if (workers) {
      say('kura: shutting down workers');
      const w = workers;
      workers = undefined;
      await w.shutdown();
    }
    await datapath?.close();
    datapath = undefined;
    if (server) {
      say(`kura: stopping the Temporal dev server (pid ${server.pid})`);
      await server.stop();
      server = undefined;
    }
    await codecServer?.close();
    codecServer = undefined;
  };

  // The estate: the configuration, or the hospital lab preset when there is none yet.
  const file = ctx.configFile();
  if (!existsSync(file)) {
    const vms = Number(o.vms);
    if (!Number.isInteger(vms) || vms < 1 || vms > 10_000)
      throw new InvalidInputError(`--vms must be a whole number from 1 to 10000, not "${o.vms}"`);
    writeFileSync(file, renderConfigYaml(hospitalPreset({ ...HOSPITAL_ESTATE, vms })));
    say(
      `kura: no configuration found; created ${path.relative(process.cwd(), file) || file} from the hospital lab preset (${vms} VMs)`,
    );
  }
  const loaded = loadConfig(file);
  const keyFile = keyFileOf(loaded);
  if (keyFile && ensureKeyFile(keyFile))
    say(`kura: created the key file ${path.relative(process.cwd(), keyFile) || keyFile}: payloads are encrypted`);
  const paths = kuraPaths(loaded);
  const site = findSite(loaded.config);
  const target = temporalConnectionOptions(loaded);
  let fleet: WorkflowHandle | undefined;

  try {
    const made = await createLabFiles(loaded, paths, {
      onProgress: (done, total) => {
        checkStop(); // stops the file creation; a half-written file is written again next time
        if (process.stderr.isTTY) process.stderr.write(`\rkura: preparing lab files ${done}/${total}`);
      },
    });
    if (process.stderr.isTTY) process.stderr.write('\n');
    const volumes = loaded.config.sites.reduce((n, s) => n + s.arrays.reduce((m, a) => m + a.volumes.length, 0), 0);
    const cartridges = loaded.config.sites.reduce(
      (n, s) => n + s.libraries.reduce((m, l) => m + l.cartridges.length, 0),
      0,
    );
    say(
      `kura: lab estate ready under ${paths.lab}: ${volumes} volumes, ${cartridges} cartridges (${made.volumes + made.cartridges} files created, ${made.skipped} already there)`,
    );

    // The Temporal server: the configured one, one already answering, or the embedded dev server.
    let address = target.address;
    if (target.explicit) {
      if (!(await serverAnswers(target.address, target.namespace))) {
        throw new KuraError(
          ErrorType.Unavailable,
          `no Temporal server answers at ${target.address} (from TEMPORAL_ADDRESS or kura.yaml); start it, or unset TEMPORAL_ADDRESS to use the embedded one`,
        );
      }
      say(`kura: using the Temporal server at ${target.address}`);
    } else if (await serverAnswers(localAddress, target.namespace)) {
      say(`kura: a Temporal server already answers at ${localAddress}; using it`);
      address = localAddress;
    } else {
      checkStop();
      // The UI this start brings up shows decrypted payloads through a codec server on loopback.
      const codecs = kuraPayloadCodecs(loaded);
      if (codecs.length > 0) {
        const c = loaded.config.security.codecServer;
        const ui = `http://127.0.0.1:${port + 1000}`;
        codecServer = await startCodecServer({
          codecs,
          port: c.port ?? port + 1001,
          origins: [...new Set([...c.origins, ui, `http://localhost:${port + 1000}`])],
        }).then(
          (s) => {
            say(`kura: codec server for the Web UI on ${s.url}`);
            return s;
          },
          (err: unknown) => {
            say(
              `kura: codec server not started (${err instanceof Error ? err.message : String(err)}); the Web UI shows payloads encrypted`,
            );
            return undefined;
          },
        );
      }
      say(
        `kura: starting the Temporal dev server (SQLite under .kura/temporal, history cache ${loaded.config.server.historyCacheSize} workflows, Web UI on http://127.0.0.1:${port + 1000})`,
      );
      server = await startDevServer({
        port,
        uiPort: port + 1000,
        dbFile: path.join(paths.home, 'temporal', 'temporal.db'),
        logFile: path.join(paths.home, 'temporal', 'server.log'),
        readyTimeoutMs: 90_000,
        // Bounded below the CLI's 8,096, the server's memory stays flat (docs/adr/052).
        workflowCache: loaded.config.server.historyCacheSize,
        ...(codecServer ? { uiCodecEndpoint: codecServer.url } : {}),
        signal: stop.signal,
        onSpawn: (s) => (server = s),
      });
      address = server.address;
    }
    checkStop();

    say('kura: starting workers (bundling workflow code)');
    // A prebuilt workflow bundle (KURA_WORKFLOW_BUNDLE, as for `npm run worker`) saves the bundling time.
    const bundle = process.env.KURA_WORKFLOW_BUNDLE;
    workers = await startKuraWorkers({
      loaded,
      address,
      workflowBundle: bundle ? { codePath: bundle } : undefined,
      hostHandlesSignals: true,
    });
    if (workers.metricsUrl) say(`kura: worker metrics on ${workers.metricsUrl}`);
    const started = workers;
    started.running.then(
      () => {
        if (workers === started)
          failure.abort(new KuraError(ErrorType.Unavailable, 'the workers stopped on their own'));
      },
      (err: unknown) => failure.abort(err),
    );
    // Other namespaces' workflows reach the control worker's Nexus service through this endpoint; a
    // server that refuses it (no operator rights) costs those callers only.
    const endpoint = kuraNexusEndpoint(loaded.config.installation);
    await ensureNexusEndpoint(workers.client.connection, {
      name: endpoint,
      namespace: target.namespace,
      taskQueue: workers.taskQueue,
    }).then(
      (change) => say(`kura: Nexus endpoint ${endpoint} ${change}: service kura on ${workers?.taskQueue}`),
      (err: unknown) =>
        say(`kura: Nexus endpoint ${endpoint} not set up (${err instanceof Error ? err.message : String(err)})`),
    );
    checkStop();
    // The online-backup datapath is a service of its own; a busy port costs online backups only.
    datapath = await startDatapath(loaded, paths, { log: say }).then(
      (dp) => {
        say(
          `kura: datapath serving ${dp.volumes.size} volume(s) on nbd://127.0.0.1:${dp.nbdPort}/<array>/<volume> (control API ${dp.controlUrl}${dp.metricsUrl ? `, metrics ${dp.metricsUrl}` : ''})`,
        );
        return dp;
      },
      (err: unknown) => {
        say(
          `kura: datapath not started (${err instanceof Error ? err.message : String(err)}); online backups need \`kura datapath\``,
        );
        return undefined;
      },
    );
    checkStop();

    // The main job: the fleet run a previous start left running, or a new one.
    const kura = new Kura(workers.client, loaded, workers.taskQueue);
    const t0 = Date.now();
    const running = await findRunningFleet(workers.client, searchAttributeLabels(loaded), site.name, workers.taskQueue);
    if (running) {
      fleet = running;
      const p = await fleet.query(fleetProgressQuery).catch(() => undefined);
      say(
        `kura: resuming the fleet run ${fleet.workflowId} (${p ? `${finishedOf(p)} of ${p.targets.length} targets finished, ${p.concurrency} at a time` : 'its progress follows'}) that a previous start left running`,
      );
    } else {
      fleet = await kura.startFleet(POLICY, { site: site.name, concurrency, requestedBy: 'npm start' });
      say(
        `kura: backing up the data volume of all ${site.vms.length} VMs of site ${site.name}, ${concurrency} at a time (fleet run ${fleet.workflowId})`,
      );
    }
    phase = 'main job';
    watching = true;
    const report = await watchFleet<FleetReport>(fleet, { title: 'backup', signal: until });
    watching = false;
    phase = 'serving';
    const seconds = (Date.now() - t0) / 1000;
    const failures = report.targets.filter((t) => t.state === 'failed');
    const ui = process.env.KURA_UI_URL ?? `http://127.0.0.1:${port + 1000}`;
    say(
      [
        '',
        `Protected ${report.succeeded} of ${report.targets.length} targets of ${site.name}: ${formatBytes(report.bytes)} in ${seconds.toFixed(1)} s (${formatBytes(report.bytes / Math.max(seconds, 0.001))}/s), ${report.failed} failed.`,
        ...failures.slice(0, 10).map((t) => `  ✗ ${t.target}: ${t.error}`),
        failures.length > 10 ? `  … and ${failures.length - 10} more` : '',
        `  the run:      ${ui}/namespaces/${target.namespace}/workflows/${encodeURIComponent(fleet.workflowId)}`,
        `  every backup: ${ui}/namespaces/${target.namespace}/workflows?query=${encodeURIComponent('KuraKind="backup"')}`,
        `  the catalog:  ./bin/kura catalog list`,
        `  a restore:    ./bin/kura restore ${report.targets.find((t) => t.backupId)?.backupId ?? '<backup-id>'} --to restores/example.img`,
      ]
        .filter((l) => l !== '')
        .join('\n'),
    );

    if (o.exitAfter || process.env.KURA_EXIT_AFTER_START === '1') {
      await shutdown();
      if (report.failed > 0) process.exitCode = 1;
      return;
    }
    if (!until.aborted) {
      say('\nkura: serving — the workers and the Temporal server keep running; press Ctrl-C to stop.');
      await new Promise<void>((resolve) => until.addEventListener('abort', () => resolve(), { once: true }));
    }
    if (failure.signal.aborted) throw failure.signal.reason;
    await shutdown();
    say('kura: stopped');
  } catch (err) {
    if (!stop.signal.aborted || failure.signal.aborted) {
      await shutdown();
      throw err;
    }
    // Interrupted before the main job ended: count what is done while the workers can still answer.
    watching = false;
    const p = fleet ? await progressOf(fleet) : undefined;
    await shutdown();
    const total = p?.targets.length ?? site.vms.length;
    const finished = p ? finishedOf(p) : 0;
    const failed = p?.targets.filter((t) => t.state === 'failed').length ?? 0;
    say(
      `kura: interrupted: ${finished} of ${total} targets finished${failed > 0 ? ` (${failed} failed)` : ''}; the other ${total - finished} continue at the next start (\`npm start\`)${fleet ? `, in the fleet run ${fleet.workflowId}` : ''}`,
    );
    process.exitCode = INTERRUPTED_EXIT;
  } finally {
    // Everything is stopped; if something forgotten still holds the event loop, do not hang on it.
    setTimeout(() => process.exit(), 5000).unref();
  }
}

/** Targets of a fleet run that have an outcome (done or failed). */
function finishedOf(p: FleetProgress): number {
  return p.targets.filter((t) => t.state === 'done' || t.state === 'failed').length;
}

/** The fleet run's progress, or undefined when it cannot be read within a few seconds. */
async function progressOf(fleet: WorkflowHandle): Promise<FleetProgress | undefined> {
  return fleet.client
    .withAbortSignal(AbortSignal.timeout(3000), () => fleet.query(fleetProgressQuery))
    .catch(() => undefined);
}

/**
 * The running fleet run of every VM of the site on this task queue (the one a previous start left
 * running, or another start runs now), if any: a second one would back up every VM twice.
 */
async function findRunningFleet(
  client: Client,
  labels: Labels,
  site: string,
  taskQueue: string,
): Promise<WorkflowHandle | undefined> {
  // The values as the fleet's start wrote them: names, or their keyed hashes (security.hashSearchAttributes).
  const query = `WorkflowType = 'fleetProtection' AND ExecutionStatus = 'Running' AND KuraSite = '${labels.value(site)}' AND KuraTarget = '${labels.value(POLICY)}'`;
  for await (const wf of client.workflow.list({ query })) {
    // A handle without a run id follows the run's continue-as-new chain to its end.
    if (wf.taskQueue === taskQueue) return client.workflow.getHandle(wf.workflowId);
  }
  return undefined;
}

/** Signals that stop `kura start`: Ctrl-C, a service manager or container engine, a closed terminal. */
const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * A signal this soon after the first is the same request: under `npm start` one Ctrl-C reaches
 * kura twice, from the terminal and forwarded by npm.
 */
const SAME_REQUEST_MS = 1000;

/** Why the start stopped: a signal asked for it. */
class StopRequested extends Error {
  override name = 'StopRequested';
  constructor(readonly by: NodeJS.Signals) {
    super(`stopped by ${by}`);
  }
}

interface StopListener {
  /** Aborted (with a StopRequested) at the first stop signal. */
  signal: AbortSignal;
  /** Runs at the first signal, before the abort. */
  onFirst(f: (sig: NodeJS.Signals) => void): void;
  /** Runs at a signal after the first (not the same request twice). */
  onAgain(f: (sig: NodeJS.Signals) => void): void;
  dispose(): void;
}

/**
 * Takes over SIGINT, SIGTERM and SIGHUP for the whole start: the first asks for an orderly stop,
 * a later one for an immediate one. Installed before anything starts, so no phase is left to the
 * signals' default action (which would leave the dev server running).
 */
function listenForStop(): StopListener {
  const controller = new AbortController();
  let firstAt = 0;
  let first: (sig: NodeJS.Signals) => void = () => undefined;
  let again: (sig: NodeJS.Signals) => void = () => process.exit(INTERRUPTED_EXIT);
  const on = (sig: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      firstAt = Date.now();
      first(sig);
      controller.abort(new StopRequested(sig));
    } else if (Date.now() - firstAt > SAME_REQUEST_MS) {
      again(sig);
    }
  };
  for (const s of STOP_SIGNALS) process.on(s, on);
  return {
    signal: controller.signal,
    onFirst: (f) => (first = f),
    onAgain: (f) => (again = f),
    dispose: () => {
      for (const s of STOP_SIGNALS) process.off(s, on);
    },
  };
}
