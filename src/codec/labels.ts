/**
 * Search attribute values as this installation writes and filters them: names, or with
 * `security.hashSearchAttributes` their keyed hash (the key file's hash key, which no rotation
 * changes), and the way back from a hash to the name for the estate's own names.
 */
import type { LoadedConfig } from '../config/load';
import { hashLabel, HASHED_PREFIX } from '../domain/label-hash';
import { LABEL_KEY_MEMO } from '../search-attributes';
import { keyRingOf } from './data-converter';
import { keyFileOf } from './keys';

export interface Labels {
  hashing: boolean;
  /** What a start puts in the memo so the workflow hashes the values it sets itself. */
  memo: Record<string, string>;
  /** The search attribute value of a name. */
  value(name: string): string;
  /** The name behind a value read back from visibility (a hash of a name the configuration knows, or as is). */
  name(value: string): string;
}

/** The labels of one configuration. */
export function searchAttributeLabels(loaded: LoadedConfig): Labels {
  const file = keyFileOf(loaded);
  if (!loaded.config.security.hashSearchAttributes || file === undefined)
    return { hashing: false, memo: {}, value: (n) => n, name: (v) => v };
  const key = keyRingOf(file).hashKey.toString('hex');
  let reverse: Map<string, string> | undefined;
  return {
    hashing: true,
    memo: { [LABEL_KEY_MEMO]: key },
    value: (n) => hashLabel(key, n),
    name: (v) => {
      if (!v.startsWith(HASHED_PREFIX)) return v;
      reverse ??= new Map(knownNames(loaded).map((n) => [hashLabel(key, n), n]));
      return reverse.get(v) ?? v;
    },
  };
}

/** Every name the configuration gives a site, a VM, a host, a volume, a policy or a device. */
function knownNames(loaded: LoadedConfig): string[] {
  const out = new Set<string>(['catalog']);
  for (const s of loaded.config.sites) {
    out.add(s.name);
    for (const v of s.vms) out.add(v.name);
    for (const h of s.hosts) out.add(h.name);
    for (const p of s.policies) out.add(p.name);
    for (const a of s.arrays) for (const vol of a.volumes) out.add(`${a.name}/${vol.id}`).add(vol.id);
  }
  return [...out];
}
