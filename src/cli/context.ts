/**
 * What every CLI command shares: the configuration named by --config, Kura's paths, a lazily
 * opened connection to Temporal, and the --json switch.
 */
import type { Command } from 'commander';
import { Client, Connection } from '@temporalio/client';
import { configPath, loadConfig, type LoadedConfig } from '../config/load';
import { kuraPaths, type KuraPaths } from '../config/paths';
import { temporalConnectionOptions } from '../stack/connection';
import { Kura, installationClientInterceptors } from '../client';
import { kuraDataConverter } from '../codec/data-converter';

export interface Connected {
  client: Client;
  kura: Kura;
}

export interface CliContext {
  json(): boolean;
  configFile(): string;
  config(): LoadedConfig;
  paths(): KuraPaths;
  /** The connection to Temporal, opened on first use and kept for the rest of the command. */
  connect(): Promise<Connected>;
  /** Closes the connection if a command opened one; the CLI calls it once, after the command. */
  close(): Promise<void>;
}

/** Builds the context from the program's global options (read when a command runs). */
export function cliContext(program: Command): CliContext {
  let loaded: LoadedConfig | undefined;
  let connected: Promise<Connected & { connection: Connection }> | undefined;
  const ctx: CliContext = {
    json: () => Boolean(program.opts().json),
    configFile: () => configPath(program.opts().config as string | undefined),
    config: () => (loaded ??= loadConfig(ctx.configFile())),
    paths: () => kuraPaths(ctx.config()),
    connect: () => (connected ??= connect(ctx.config())),
    close: async () => {
      const open = await connected?.catch(() => undefined);
      connected = undefined;
      await open?.connection.close();
    },
  };
  return ctx;
}

async function connect(loaded: LoadedConfig): Promise<Connected & { connection: Connection }> {
  const t = temporalConnectionOptions(loaded);
  const connection = await Connection.connect({
    address: t.address,
    tls: t.tls,
    apiKey: t.apiKey,
    connectTimeout: 5000,
  });
  const client = new Client({
    connection,
    namespace: t.namespace,
    dataConverter: kuraDataConverter(loaded),
    interceptors: installationClientInterceptors(loaded.config.installation),
  });
  return { client, kura: new Kura(client, loaded), connection };
}

/** Prints a result: JSON with --json, else the human text. */
export function print(ctx: CliContext, value: unknown, human: () => string): void {
  if (ctx.json()) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else process.stdout.write(`${human()}\n`);
}

/** Reports a job started with `--detach`: its workflow id, and where to watch it. */
export function printStarted(ctx: CliContext, workflowId: string): void {
  print(ctx, { ok: true, workflowId }, () => `started ${workflowId}\n  watch: ${uiLink(workflowId)}`);
}

/** The Temporal Web UI page of a workflow, when the UI's address is known. */
export function uiLink(workflowId: string, namespace = 'default'): string {
  const base = process.env.KURA_UI_URL ?? 'http://127.0.0.1:8233';
  return `${base}/namespaces/${namespace}/workflows/${encodeURIComponent(workflowId)}`;
}
