/**
 * Fault injection for the lab: what an operator (or a test) may ask a lab device to do wrong,
 * and at which point of a transfer it starts doing it.
 */
import { z } from 'zod';
import { InvalidInputError } from './errors';
import { NameSchema } from './names';
import { parseSize } from './units';

export const FaultKind = {
  /** The device fails with a DeviceFaultError once the transfer reaches the point. */
  Fail: 'fail',
  /** The device stops answering from the point on: no progress until aborted or cleared. */
  Hang: 'hang',
  /** The device slows down to `rateBytesPerSec` from the point on. */
  Slow: 'slow',
} as const;
export type FaultKind = (typeof FaultKind)[keyof typeof FaultKind];

/** The rate of a `slow` fault that does not name one: 1 MiB/s. */
export const DEFAULT_SLOW_RATE_BYTES_PER_SEC = 1024 * 1024;

/**
 * Where in the volume a fault starts: an absolute volume byte, or a percentage of the volume's
 * size (so "50%" means the middle of the volume, whichever piece happens to cover it).
 */
export const FaultAfterSchema = z.union([
  z.strictObject({ bytes: z.number().int().min(0) }),
  z.strictObject({ percent: z.number().min(0).max(100) }),
]);
export type FaultAfter = z.infer<typeof FaultAfterSchema>;

export const FaultSpecSchema = z.object({
  /** Any device name of the site: server, library, drive, tape, switch, copy device or array. */
  device: NameSchema,
  kind: z.enum([FaultKind.Fail, FaultKind.Hang, FaultKind.Slow]),
  after: FaultAfterSchema,
  /** Throughput of a `slow` fault; {@link DEFAULT_SLOW_RATE_BYTES_PER_SEC} when absent. */
  rateBytesPerSec: z.number().int().positive().optional(),
  /** A `once` fault is consumed by the first transfer it hits; otherwise it stays until cleared. */
  once: z.boolean().default(false),
});
export type FaultSpec = z.infer<typeof FaultSpecSchema>;
export type FaultSpecInput = z.input<typeof FaultSpecSchema>;

export const FaultSchema = FaultSpecSchema.extend({
  id: z.number().int().min(1),
  createdAt: z.iso.datetime(),
  /** How many times the fault has fired so far. */
  triggered: z.number().int().min(0),
});
export type Fault = z.infer<typeof FaultSchema>;

/**
 * Parses the `--after` value of `kura lab fault add`: `50%` (of the volume), or a byte position
 * such as `0`, `1048576` or `64MiB`. Throws InvalidInputError for anything else.
 */
export function parseAfter(text: string): FaultAfter {
  const trimmed = text.trim();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(trimmed);
  if (pct) {
    const percent = Number(pct[1]);
    if (percent > 100) {
      throw new InvalidInputError(
        `--after "${text}" is more than 100%; give a percentage from 0% to 100% of the volume`,
      );
    }
    return { percent };
  }
  const bytes = parseSize(trimmed);
  if (bytes === undefined) {
    throw new InvalidInputError(
      `--after "${text}" is neither a percentage nor a byte position; write e.g. 50% (of the volume), 0, 1048576 or 64MiB`,
    );
  }
  return { bytes };
}

/** The volume byte at which a fault fires, for a volume of `volumeSize` bytes. */
export function faultPoint(after: FaultAfter, volumeSize: number): number {
  return 'bytes' in after ? after.bytes : Math.floor((after.percent / 100) * volumeSize);
}
