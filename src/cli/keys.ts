/** `kura keys`: the key file that encrypts Kura's payloads — list its keys, add a new one. */
import type { Command } from 'commander';
import { keyFileOf, listKeys, rotateKeyFile } from '../codec/keys';
import { InvalidInputError } from '../domain/errors';
import type { LoadedConfig } from '../config/load';
import { print, type CliContext } from './context';

export function registerKeysCommands(program: Command, ctx: CliContext): void {
  const keys = program.command('keys').description("the key file that encrypts Kura's payloads (security.keyFile)");

  keys
    .command('list')
    .description('the ids of the keys, oldest first, and which one encrypts')
    .action(() => {
      const file = keyFile(ctx.config());
      const rows = listKeys(file);
      print(ctx, { file, keys: rows }, () =>
        [file, ...rows.map((k) => `  ${k.id}  ${k.created}${k.encrypts ? '  (encrypts)' : ''}`)].join('\n'),
      );
    });

  keys
    .command('rotate')
    .description(
      'add a new key, which encrypts from now on; every older key still decrypts (creates the file if missing)',
    )
    .action(() => {
      const file = keyFile(ctx.config());
      const id = rotateKeyFile(file);
      print(
        ctx,
        { ok: true, file, encrypts: id },
        () =>
          `${file}: key ${id} encrypts from now on; running workers and clients pick it up at their next payload. Keep every older key: it decrypts the histories it encrypted.`,
      );
    });
}

function keyFile(loaded: LoadedConfig): string {
  const file = keyFileOf(loaded);
  if (file === undefined)
    throw new InvalidInputError(
      `${loaded.file} names no key file; add \`security: { keyFile: kura-keys.json }\` to it to encrypt payloads`,
    );
  return file;
}
