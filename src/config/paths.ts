/** Where Kura keeps its files, derived from the loaded configuration and the environment. */
import * as path from 'node:path';
import type { LoadedConfig } from './load';

export interface KuraPaths {
  /** Kura's state directory ($KURA_HOME, else `home` of kura.yaml relative to it). */
  home: string;
  /** The lab's real files: volumes, cartridges, and its state database. */
  lab: string;
  labState: string;
  catalog: string;
  /** Absolute restore roots; restores may only write below these. */
  restoreRoots: string[];
}

/** Resolves every path Kura uses for one configuration. */
export function kuraPaths(loaded: LoadedConfig): KuraPaths {
  const home = path.resolve(process.env.KURA_HOME ?? path.resolve(loaded.dir, loaded.config.home));
  const lab = path.join(home, 'lab');
  return {
    home,
    lab,
    labState: path.join(lab, 'state.db'),
    catalog: path.join(home, 'catalog.db'),
    restoreRoots: loaded.config.restoreRoots.map((r) => path.resolve(loaded.dir, r)),
  };
}
