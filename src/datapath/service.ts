/**
 * The datapath service: opens every protected volume (replaying the journal of any that stopped in
 * backup mode), serves them over NBD on 127.0.0.1, and answers the control API. `kura datapath`
 * runs it on its own; `kura start` runs it beside the workers.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { findSite } from '../config/targets';
import type { DatapathConfig } from '../domain/datapath';
import { InvalidInputError, NotFoundError } from '../domain/errors';
import type { DatapathTls } from '../domain/datapath-tls-config';
import { labVolumePath } from '../lab/files';
import { DatapathMetrics } from '../metrics/datapath-metrics';
import { serveMetrics, type MetricsEndpoint } from '../metrics/http';
import { ControlServer } from './control';
import { NbdServer, type NbdTls } from './nbd-server';
import { Volume } from './volume';
import { controlTokenFile, writeControlToken } from './token';
import { remoteCopyHooks } from './remote-hooks';

export interface DatapathService {
  nbdPort: number;
  controlPort: number;
  /** Base URL of the control API. */
  controlUrl: string;
  /** The token every control request must carry, and the 0600 file it was written to at this start. */
  token: string;
  tokenFile: string;
  /** Whether the NBD exports require TLS, offer it, or serve in the clear only (no `datapath.tls`). */
  nbdTls: 'required' | 'offered' | 'off';
  volumes: Map<string, Volume>;
  /** Where its Prometheus metrics are served, when kura.yaml's `metrics.datapathPort` (or the option) asks for them. */
  metricsUrl?: string;
  close(): Promise<void>;
}

export interface StartDatapathOptions {
  /** Ports that override kura.yaml (0: any free port). */
  nbdPort?: number;
  controlPort?: number;
  /** Port of the metrics endpoint, overriding kura.yaml's `metrics.datapathPort` (0: off). */
  metricsPort?: number;
  /** Settings that override kura.yaml's datapath section. */
  settings?: Partial<DatapathConfig>;
  log?: (line: string) => void;
}

/** The volumes the datapath serves: export name (array/volume) → main storage file and state directory. */
export function datapathVolumes(
  loaded: LoadedConfig,
  paths: KuraPaths,
): { site: string; name: string; mainFile: string; stateDir: string }[] {
  const dp = loaded.config.datapath;
  const site = findSite(loaded.config, dp.site);
  const refs = dp.volumes ?? [...new Set(site.vms.map((v) => v.dataVolume))];
  return refs.map((ref) => {
    const [array = '', volume = ''] = ref.split('/');
    if (!site.arrays.find((a) => a.name === array)?.volumes.some((v) => v.id === volume)) {
      throw new NotFoundError(
        `datapath.volumes names "${ref}", which is no volume of site ${site.name} in ${loaded.file}`,
        { volume: ref },
      );
    }
    return {
      site: site.name,
      name: ref,
      mainFile: labVolumePath(paths, site.name, array, volume),
      stateDir: path.join(paths.home, 'datapath', site.name, array),
    };
  });
}

/**
 * The NBD server's TLS from kura.yaml's `datapath.tls`: the certificate and key read (relative to
 * kura.yaml) into a secure context; InvalidInput naming the key and the file when one cannot be
 * read or they do not make a certificate and its key.
 */
export function nbdTls(loaded: LoadedConfig, cfg: DatapathTls | undefined): NbdTls | undefined {
  if (!cfg) return undefined;
  const read = (key: 'cert' | 'key') => {
    const file = path.resolve(loaded.dir, cfg[key]);
    try {
      return readFileSync(file);
    } catch (err) {
      throw new InvalidInputError(
        `datapath.tls.${key} of ${loaded.file}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); name a PEM file the datapath's user can read`,
      );
    }
  };
  const [cert, key] = [read('cert'), read('key')];
  try {
    return { context: tls.createSecureContext({ cert, key }), require: cfg.require };
  } catch (err) {
    throw new InvalidInputError(
      `datapath.tls of ${loaded.file}: ${cfg.cert} and ${cfg.key} are not a PEM certificate and its private key (${(err as Error).message})`,
    );
  }
}

/** Starts the datapath for a configuration. */
export async function startDatapath(
  loaded: LoadedConfig,
  paths: KuraPaths,
  opts: StartDatapathOptions = {},
): Promise<DatapathService> {
  const settings = { ...loaded.config.datapath, ...opts.settings };
  const volumes = new Map<string, Volume>();
  const metricsPort = opts.metricsPort ?? loaded.config.metrics.datapathPort;
  const metrics = metricsPort ? new DatapathMetrics(volumes) : undefined;
  const tls = nbdTls(loaded, settings.tls);
  const nbd = new NbdServer({ exports: volumes, log: opts.log, onRequest: metrics?.onRequest, tls });
  const tokenFile = controlTokenFile(loaded, paths);
  const token = writeControlToken(tokenFile);
  const control = new ControlServer(volumes, { token, tokenFile, log: opts.log });
  let endpoint: MetricsEndpoint | undefined;
  const remote = remoteCopyHooks(loaded, paths, findSite(loaded.config, settings.site).name);
  // Stops whatever has been started so far; closing a server that never listened does nothing.
  const close = async () => {
    await endpoint?.close();
    await control.close();
    await nbd.close();
    for (const v of volumes.values()) await v.close();
    remote.close();
  };
  try {
    for (const v of datapathVolumes(loaded, paths)) {
      const onWrite = remote.hookFor(v.name);
      const vol = await Volume.open({
        name: v.name,
        mainFile: v.mainFile,
        stateDir: v.stateDir,
        settings,
        ...(onWrite ? { onWrite } : {}),
      });
      volumes.set(v.name, vol);
      const st = vol.status();
      if (st.mode === 'backup')
        opts.log?.(
          `datapath: ${v.name} resumed in backup mode for ${st.backupId} (${st.phase}); replayed ${st.replayedEntries} journal entries`,
        );
    }
    const nbdPort = await nbd.listen(opts.nbdPort ?? settings.nbdPort);
    const controlPort = await control.listen(opts.controlPort ?? settings.controlPort);
    if (metrics) endpoint = await serveMetrics(metrics.registry, metricsPort);
    return {
      nbdPort,
      controlPort,
      controlUrl: `http://127.0.0.1:${controlPort}`,
      token,
      tokenFile,
      nbdTls: tls ? (tls.require ? 'required' : 'offered') : 'off',
      volumes,
      ...(endpoint ? { metricsUrl: endpoint.url } : {}),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
