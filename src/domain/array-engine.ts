/**
 * Which storage engine runs an array's function software (kura.yaml `arrays[].driver`): the lab's
 * plain files, or one qemu-storage-daemon per array (`qsd`), and what the daemon needs.
 */
import { z } from 'zod';
import { SizeSchema } from './units';

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

/** The `qsd` section of an array whose `driver` is `qsd`. Relative paths are relative to Kura's home. */
export const QsdArrayConfigSchema = z.object({
  /** The array's directory: volume images, the free pool's replicas, snapshots, the daemon's state. */
  imageDir: z.string().min(1).optional(),
  /** The daemon's QMP socket (default `<imageDir>/qmp.sock`). */
  socket: SocketPathSchema.optional(),
  /** The NBD server's socket through which hosts reach the volumes (default `<imageDir>/nbd.sock`). */
  nbdSocket: SocketPathSchema.optional(),
  /**
   * Space of the array's free pool: replicas of pairs and snapshots' copy-before-write images are
   * allocated from it while an operation needs them (each counts the size of its volume).
   */
  freePool: SizeSchema,
  /** Cap on a pair's full copy in bytes/s (0: as fast as the disks go); writes of hosts are never held back. */
  copyRate: SizeSchema.default(0),
});
export type QsdArrayConfig = z.infer<typeof QsdArrayConfigSchema>;
