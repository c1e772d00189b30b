/** kura.yaml `classes.<class>.toTape` (docs/adr/042): checked with the rest of the classes, with defaults. */
import { describe, expect, it } from 'vitest';
import { ClassesSchema } from '../../src/domain/classes';
import { InvalidInputError } from '../../src/domain/errors';
import { TO_TAPE_EVERY_MS } from '../../src/domain/store-tape';
import { parseWith } from '../../src/domain/validate';

const server = (toTape: unknown) => ({
  server: { schedule: '22:00', retention: { keepLast: 1 }, targets: [], toTape },
});

describe("a class's tape policy", () => {
  it('takes every, with two streams in failover mode unless given', () => {
    expect(parseWith(ClassesSchema, server({ every: 'weekly' }), 'classes').server?.toTape).toEqual({
      every: 'weekly',
      streams: 2,
      mode: 'failover',
    });
    expect(
      parseWith(ClassesSchema, server({ every: 'monthly', streams: 1, mode: 'parallel' }), 'classes').server?.toTape,
    ).toEqual({ every: 'monthly', streams: 1, mode: 'parallel' });
    expect(parseWith(ClassesSchema, server(undefined), 'classes').server?.toTape).toBeUndefined();
    expect(TO_TAPE_EVERY_MS.weekly).toBe(7 * TO_TAPE_EVERY_MS.daily);
  });

  it('is refused with a period it does not know, or streams out of range, naming the path', () => {
    expect(() => parseWith(ClassesSchema, server({ every: 'hourly' }), 'classes')).toThrow(InvalidInputError);
    expect(() => parseWith(ClassesSchema, server({ every: 'hourly' }), 'classes')).toThrow(
      /invalid classes: server\.toTape\.every: .*"daily"\|"weekly"\|"monthly"/,
    );
    expect(() => parseWith(ClassesSchema, server({ every: 'daily', streams: 9 }), 'classes')).toThrow(
      /server\.toTape\.streams/,
    );
  });
});
