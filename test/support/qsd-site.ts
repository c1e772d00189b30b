/**
 * A small hospital-like test site whose array runs on qemu-storage-daemon (`driver: qsd`): every
 * VM's volumes are images of the array's daemon, backed up and restored through Kura's workers
 * like the lab's. The cleanup stops the daemons the workers (or the test) started, by their pids.
 */
import type { ConfigInput } from '../../src/domain/inventory';
import { QsdDriver } from '../../src/drivers/qsd/driver';
import type { QsdArray } from '../../src/drivers/qsd/array';
import { makeLab, type LabOptions, type TestLab } from './harness';

/** The array of the site that runs on qemu-storage-daemon. */
export const QSD_ARRAY = 'array-01';

export interface QsdTestLab extends TestLab {
  /** A driver of the test's own over the same daemons as the workers' (the QMP monitor serialises the two). */
  qsd: QsdDriver;
  /** The site's qsd array. */
  array(): QsdArray;
  /** The VM's data volume on the array, as a reference. */
  ref(vm: string): { site: string; array: string; volume: string };
  /** Stops the array's daemon and its hosts' attachments, then removes the lab's files. */
  cleanupQsd(): Promise<void>;
}

/**
 * A lab (see makeLab) whose `array-01` runs on qemu-storage-daemon with a free pool of `freePool`
 * bytes (default: room for four data volumes). Volumes start as zeros; write them over NBD.
 */
export async function makeQsdLab(opts: LabOptions & { freePool?: number } = {}): Promise<QsdTestLab> {
  const dataSize = opts.dataVolumeSize ?? 4 * 1024 * 1024;
  const lab = await makeLab({
    ...opts,
    dataVolumeSize: dataSize,
    edit: (cfg: ConfigInput) => {
      const array = cfg.sites[0]!.arrays[0]!;
      array.driver = 'qsd';
      array.freePool = { size: opts.freePool ?? 4 * dataSize };
      opts.edit?.(cfg);
    },
  });
  const qsd = new QsdDriver(lab.loaded, lab.paths);
  return {
    ...lab,
    qsd,
    array: () => qsd.array(lab.site, QSD_ARRAY),
    ref: (vm) => ({ site: lab.site, array: QSD_ARRAY, volume: `${vm}-data` }),
    async cleanupQsd() {
      // The workers' daemon is the array's one daemon: this driver finds it by its pid file and stops it.
      qsd.array(lab.site, QSD_ARRAY);
      await qsd.stopAll();
      lab.cleanup();
    },
  };
}
