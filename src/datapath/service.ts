/**
 * The datapath service: opens every protected volume (replaying the journal of any that stopped in
 * backup mode), serves them over NBD on 127.0.0.1, and answers the control API. `kura datapath`
 * runs it on its own; `kura start` runs it beside the workers.
 */
import * as path from 'node:path';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { findSite } from '../config/targets';
import type { DatapathConfig } from '../domain/datapath';
import { NotFoundError } from '../domain/errors';
import { labVolumePath } from '../lab/files';
import { DatapathMetrics } from '../metrics/datapath-metrics';
import { serveMetrics, type MetricsEndpoint } from '../metrics/http';
import { ControlServer } from './control';
import { NbdServer } from './nbd-server';
import { Volume } from './volume';
import { remoteCopyHooks } from './remote-hooks';

export interface DatapathService {
  nbdPort: number;
  controlPort: number;
  /** Base URL of the control API. */
  controlUrl: string;
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
  const nbd = new NbdServer({ exports: volumes, log: opts.log, onRequest: metrics?.onRequest });
  const control = new ControlServer(volumes);
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
      volumes,
      ...(endpoint ? { metricsUrl: endpoint.url } : {}),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
