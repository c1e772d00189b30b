/**
 * `kura codec-server`: serve `/encode` and `/decode` for the Temporal Web UI with the key file of
 * kura.yaml, until Ctrl-C. Give the UI its address (`--ui-codec-endpoint` of the dev server, or
 * the codec endpoint of the UI's settings); `kura start` runs one by itself.
 */
import type { Command } from 'commander';
import { kuraPayloadCodecs } from '../codec/data-converter';
import { startCodecServer } from '../codec/codec-server';
import { InvalidInputError } from '../domain/errors';
import type { CliContext } from './context';

/** Beside the Web UI of the default dev server (8233). */
const DEFAULT_PORT = 8234;

export function registerCodecServerCommand(program: Command, ctx: CliContext): void {
  program
    .command('codec-server')
    .description("serve /encode and /decode for the Temporal Web UI with kura.yaml's key file, until Ctrl-C")
    .option('--port <n>', 'port on 127.0.0.1 (default: security.codecServer.port)')
    .option('--origin <url...>', "the Web UI's origins allowed by CORS (default: security.codecServer.origins)")
    .action(async (o: { port?: string; origin?: string[] }) => {
      const loaded = ctx.config();
      const codecs = kuraPayloadCodecs(loaded);
      if (codecs.length === 0)
        throw new InvalidInputError(
          `${loaded.file} names no key file (security.keyFile): payloads are not encrypted, so there is nothing to decode`,
        );
      const port = o.port === undefined ? (loaded.config.security.codecServer.port ?? DEFAULT_PORT) : Number(o.port);
      if (!Number.isInteger(port) || port < 1 || port > 65535)
        throw new InvalidInputError(`--port must be a port number from 1 to 65535, not "${o.port}"`);
      // The token stays out of argv (visible to every user in ps) and out of kura.yaml.
      const token = process.env.KURA_CODEC_TOKEN || undefined;
      const server = await startCodecServer({
        codecs,
        port,
        origins: o.origin ?? loaded.config.security.codecServer.origins,
        ...(token ? { token } : {}),
      });
      process.stderr.write(
        `kura: codec server on ${server.url} (/encode, /decode)${token ? ', bearer token required' : ''}; Ctrl-C stops it\n`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
    });
}
