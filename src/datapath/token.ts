/**
 * The datapath control API's token: 32 random bytes, written at every start of the datapath into
 * an owner-only (0600) file that only the datapath's own user (and the workers running as it) can
 * read, so another local process cannot drive the volumes into or out of backup mode.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { ErrorType, KuraError } from '../domain/errors';

/** Where the token lives: kura.yaml's `datapath.tokenFile` (relative to kura.yaml), else under Kura's home. */
export function controlTokenFile(loaded: LoadedConfig, paths: KuraPaths): string {
  const configured = loaded.config.datapath.tokenFile;
  return configured ? path.resolve(loaded.dir, configured) : path.join(paths.home, 'datapath', 'control.token');
}

/**
 * Writes a fresh token, owner-only, and returns it. The file is written beside its place and
 * renamed over it, so a client reading it meanwhile reads the old token or the new one, never half.
 */
export function writeControlToken(file: string): string {
  const token = randomBytes(32).toString('hex');
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${token}\n`, { mode: 0o600 });
  // The mode given to writeFileSync is masked by the umask and ignored for a file that exists.
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return token;
}

/** Reads the token; `Unavailable` (a retry may find it) when the datapath has not written one. */
export function readControlToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new KuraError(
      ErrorType.Unavailable,
      `cannot read the datapath's control token ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); the datapath writes it when it starts (\`kura datapath\`), readable by its own user only`,
      { cause: err },
    );
  }
  return text.trim();
}

/** Whether an `Authorization` header carries the token, compared in constant time. */
export function carriesToken(authorization: string | undefined, token: string): boolean {
  const m = /^Bearer (\S+)$/.exec(authorization ?? '');
  if (!m) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1]!), digest(token));
}
