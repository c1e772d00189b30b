/**
 * `kura start` (what `npm start` runs): bring up the embedded stack — the lab estate if there is no
 * configuration yet, the Temporal dev server unless one is configured or already answers, the
 * workers — then do the main job: back up the data volume of every VM once, now, a bounded number
 * at a time, with progress and a summary. Then serve until Ctrl-C and shut everything down.
 */
import { existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../config/load';
import { kuraPaths } from '../config/paths';
import { findSite } from '../config/targets';
import { InvalidInputError, KuraError, ErrorType } from '../domain/errors';
import type { FleetReport } from '../domain/fleet';
import { formatBytes } from '../domain/units';
import { hospitalPreset, renderConfigYaml } from '../lab/preset';
import { createLabFiles } from '../lab/files';
import { temporalConnectionOptions } from '../stack/connection';
import { serverAnswers, startDevServer, type DevServer } from '../stack/devserver';
import { startKuraWorkers } from '../worker';
import { startDatapath } from '../datapath/service';
import { Kura } from '../api';
import { watchFleet } from './progress';
import { uiLink, type CliContext } from './context';

export function registerStartCommand(program: Command, ctx: CliContext): void {
  program
    .command('start')
    .description('bring up the embedded stack and back up every VM of the estate once, then serve until Ctrl-C')
    .option('--exit-after', 'shut down after the main job instead of serving (also KURA_EXIT_AFTER_START=1)')
    .option('--concurrency <n>', 'backups running at once', '4')
    .option('--vms <n>', 'VMs of the lab estate when it is created', '77')
    .option('--temporal-port <n>', 'port of the embedded Temporal dev server (its Web UI on n+1000)', '7233')
    .action(async (o: { exitAfter?: boolean; concurrency: string; vms: string; temporalPort: string }) => {
      const concurrency = Number(o.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 200)
        throw new InvalidInputError(`--concurrency must be a whole number from 1 to 200, not "${o.concurrency}"`);
      const port = Number(o.temporalPort);
      if (!Number.isInteger(port) || port < 1 || port > 64535)
        throw new InvalidInputError(`--temporal-port must be a port number from 1 to 64535, not "${o.temporalPort}"`);
      const localAddress = `127.0.0.1:${port}`;
      const say = (s: string) => process.stderr.write(`${s}\n`);

      // The estate: the configuration, or the hospital lab preset when there is none yet.
      const file = ctx.configFile();
      if (!existsSync(file)) {
        const vms = Number(o.vms);
        if (!Number.isInteger(vms) || vms < 1 || vms > 10_000)
          throw new InvalidInputError(`--vms must be a whole number from 1 to 10000, not "${o.vms}"`);
        writeFileSync(file, renderConfigYaml(hospitalPreset({ vms })));
        say(
          `kura: no configuration found; created ${path.relative(process.cwd(), file) || file} from the hospital lab preset (${vms} VMs)`,
        );
      }
      const loaded = loadConfig(file);
      const paths = kuraPaths(loaded);
      const made = await createLabFiles(loaded, paths, {
        onProgress: (done, total) => {
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
      const target = temporalConnectionOptions(loaded);
      let server: DevServer | undefined;
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
      } else {
        say(
          `kura: starting the Temporal dev server (SQLite under .kura/temporal, Web UI on http://127.0.0.1:${port + 1000})`,
        );
        server = await startDevServer({
          port,
          uiPort: port + 1000,
          dbFile: path.join(paths.home, 'temporal', 'temporal.db'),
          logFile: path.join(paths.home, 'temporal', 'server.log'),
          readyTimeoutMs: 90_000,
        });
        address = server.address;
      }

      say('kura: starting workers (bundling workflow code)');
      // A prebuilt workflow bundle (KURA_WORKFLOW_BUNDLE, as for `npm run worker`) saves the bundling time.
      const bundle = process.env.KURA_WORKFLOW_BUNDLE;
      const workers = await startKuraWorkers({
        loaded,
        address,
        workflowBundle: bundle ? { codePath: bundle } : undefined,
      });
      // The online-backup datapath is a service of its own; a busy port costs online backups only.
      const datapath = await startDatapath(loaded, paths, { log: say }).then(
        (dp) => {
          say(
            `kura: datapath serving ${dp.volumes.size} volume(s) on nbd://127.0.0.1:${dp.nbdPort}/<array>/<volume> (control API ${dp.controlUrl})`,
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
      const shutdown = async () => {
        say('kura: shutting down workers');
        await workers.shutdown();
        await datapath?.close();
        if (server) {
          say('kura: stopping the Temporal dev server');
          await server.stop();
        }
      };

      let failed = 0;
      try {
        const kura = new Kura(workers.client, loaded, workers.taskQueue);
        const site = findSite(loaded.config);
        const t0 = Date.now();
        const handle = await kura.startFleet('all', { site: site.name, concurrency, requestedBy: 'npm start' });
        say(
          `kura: backing up the data volume of all ${site.vms.length} VMs of site ${site.name}, ${concurrency} at a time (fleet run ${handle.workflowId})`,
        );
        const report = await watchFleet<FleetReport>(handle, { title: 'backup' });
        const seconds = (Date.now() - t0) / 1000;
        failed = report.failed;
        const failures = report.targets.filter((t) => t.state === 'failed');
        say(
          [
            '',
            `Protected ${report.succeeded} of ${report.targets.length} targets of ${site.name}: ${formatBytes(report.bytes)} in ${seconds.toFixed(1)} s (${formatBytes(report.bytes / Math.max(seconds, 0.001))}/s), ${report.failed} failed.`,
            ...failures.slice(0, 10).map((t) => `  ✗ ${t.target}: ${t.error}`),
            failures.length > 10 ? `  … and ${failures.length - 10} more` : '',
            `  the run:      ${uiLink(handle.workflowId)}`,
            `  every backup: http://127.0.0.1:8233/namespaces/${target.namespace}/workflows?query=${encodeURIComponent('KuraKind="backup"')}`,
            `  the catalog:  ./bin/kura catalog list`,
            `  a restore:    ./bin/kura restore ${report.targets.find((t) => t.backupId)?.backupId ?? '<backup-id>'} --to restores/example.img`,
          ]
            .filter((l) => l !== '')
            .join('\n'),
        );
      } catch (err) {
        await shutdown();
        throw err;
      }

      if (o.exitAfter || process.env.KURA_EXIT_AFTER_START === '1') {
        await shutdown();
        if (failed > 0) process.exitCode = 1;
        return;
      }
      say('\nkura: serving — the workers and the Temporal server keep running; press Ctrl-C to stop.');
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await shutdown();
    });
}
