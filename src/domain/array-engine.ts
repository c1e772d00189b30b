/**
 * Which storage engine runs an array's function software (kura.yaml `arrays[].driver`): the lab's
 * plain files, or one qemu-storage-daemon per array (`qsd`), and what the daemon needs.
 */
import { z } from 'zod';

/** The engines an array can run on. */
export const ArrayDriver = { lab: 'lab', qsd: 'qsd' } as const;
export type ArrayDriver = (typeof ArrayDriver)[keyof typeof ArrayDriver];

/** A Unix socket path longer than this cannot be bound (sun_path holds 108 bytes with the NUL). */
export const MAX_SOCKET_PATH = 107;

const SocketPathSchema = z
  .string()
  .min(1)
  .refine(
    (p) => Buffer.byteLength(p) <= MAX_SOCKET_PATH,
    `a Unix socket path holds at most ${MAX_SOCKET_PATH} bytes; choose a shorter path, e.g. /run/kura/<array>.sock`,
  );

/**
 * The keys of the `qsd` section that moved to the array itself (its `freePool`, which every engine
 * reads), with where each went: a file that still names one is refused at that key, not silently
 * read one way by one engine and another way by the other.
 */
export const MOVED_QSD_KEYS = {
  freePool: 'freePool.size',
  copyRate: 'freePool.copyRate',
} as const;

/** The `qsd` section of an array whose `driver` is `qsd`. Relative paths are relative to Kura's home. */
export const QsdArrayConfigSchema = z.object({
  /** The array's directory: volume images, the free pool's replicas, snapshots, the daemon's state. */
  imageDir: z.string().min(1).optional(),
  /** The daemon's QMP socket (default `<imageDir>/qmp.sock`). */
  socket: SocketPathSchema.optional(),
  /** The NBD server's socket through which hosts reach the volumes (default `<imageDir>/nbd.sock`). */
  nbdSocket: SocketPathSchema.optional(),
  // Accepted only to be refused with where they went (inventory.ts); never read.
  freePool: z.unknown().optional(),
  copyRate: z.unknown().optional(),
});
export type QsdArrayConfig = z.infer<typeof QsdArrayConfigSchema>;
