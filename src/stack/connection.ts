/**
 * Where Kura's Temporal server is and how to reach it: explicit options first, then Temporal's
 * standard environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS_*, TEMPORAL_API_KEY,
 * or a temporal.toml profile), then kura.yaml's `temporal` section, then the embedded dev server.
 */
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { TLSConfig } from '@temporalio/client';
import type { LoadedConfig } from '../config/load';

export const DEFAULT_ADDRESS = '127.0.0.1:7233';

export interface TemporalTarget {
  address: string;
  namespace: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
  /** Whether the address came from the user (env, profile, kura.yaml) rather than the default. */
  explicit: boolean;
}

/** Resolves the Temporal connection for this process. */
export function temporalConnectionOptions(
  loaded: LoadedConfig | undefined,
  override: { address?: string; namespace?: string } = {},
): TemporalTarget {
  let fromEnv: ReturnType<typeof loadClientConnectConfig> | undefined;
  try {
    fromEnv = loadClientConnectConfig();
  } catch {
    fromEnv = undefined;
  }
  const envAddress = fromEnv?.connectionOptions.address;
  const address = override.address ?? envAddress ?? loaded?.config.temporal.address;
  const namespace = override.namespace ?? fromEnv?.namespace ?? loaded?.config.temporal.namespace ?? 'default';
  const apiKey = typeof fromEnv?.connectionOptions.apiKey === 'string' ? fromEnv.connectionOptions.apiKey : undefined;
  return {
    address: address ?? DEFAULT_ADDRESS,
    namespace,
    tls: fromEnv?.connectionOptions.tls ?? undefined,
    apiKey,
    explicit: address !== undefined,
  };
}
