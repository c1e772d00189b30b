/**
 * The `security` section of kura.yaml: the key file that encrypts every payload Kura sends to
 * Temporal, whether search attribute values that name things are hashed, and the codec server the
 * Temporal Web UI decodes payloads through.
 */
import { z } from 'zod';

export const CodecServerConfigSchema = z.object({
  /**
   * Loopback port of `kura codec-server`; unset, it is the dev server's port + 1001 (8234, beside the
   * UI's 8233), which is also where `kura start` serves it.
   */
  port: z.number().int().min(1).max(65535).optional(),
  /** Origins allowed to call it from a browser: the Temporal Web UI's. */
  origins: z.array(z.string().url()).default(['http://127.0.0.1:8233', 'http://localhost:8233']),
});
export type CodecServerConfig = z.infer<typeof CodecServerConfigSchema>;

export const SecurityConfigSchema = z.object({
  /**
   * The key file (relative to kura.yaml; owner-only, mode 0600): the newest key encrypts, every
   * listed key decrypts. Without it payloads go to Temporal in clear.
   */
  keyFile: z.string().min(1).optional(),
  /**
   * Replace the values of the search attributes that name things (KuraTarget, KuraSite, KuraVm) by a
   * keyed hash, for estates whose names must not reach the Temporal server at all. Needs `keyFile`.
   */
  hashSearchAttributes: z.boolean().default(false),
  codecServer: CodecServerConfigSchema.default(CodecServerConfigSchema.parse({})),
});
export type SecurityConfig = z.infer<typeof SecurityConfigSchema>;
