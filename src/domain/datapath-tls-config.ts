/**
 * The `datapath.tls` section of kura.yaml: the certificate and key the NBD server offers to clients
 * that start TLS (NBD_OPT_STARTTLS), and whether a client that does not is refused. Kept apart so
 * the inventory schema includes it without an import cycle.
 */
import { z } from 'zod';

export const DatapathTlsSchema = z.object({
  /** The server's certificate chain, PEM (relative to kura.yaml). */
  cert: z.string().min(1),
  /** Its private key, PEM (relative to kura.yaml); keep it owner-only. */
  key: z.string().min(1),
  /**
   * Whether every client must start TLS before it is given an export (the default): one that asks
   * for an export in the clear is answered NBD_REP_ERR_TLS_REQD. `false` offers TLS and serves plain
   * clients too.
   */
  require: z.boolean().default(true),
});
export type DatapathTls = z.infer<typeof DatapathTlsSchema>;
