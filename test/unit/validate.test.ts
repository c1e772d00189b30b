import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InvalidInputError } from '../../src/domain/errors';
import { parseWith } from '../../src/domain/validate';

const Schema = z.object({ site: z.string().min(1), drives: z.array(z.object({ id: z.string().min(2) })) });

describe('parseWith, the one validation helper', () => {
  it('returns the parsed value when the input is valid', () => {
    expect(parseWith(Schema, { site: 's', drives: [{ id: 'd1' }] }, 'request')).toEqual({
      site: 's',
      drives: [{ id: 'd1' }],
    });
  });

  it('throws InvalidInputError naming every problem by its path', () => {
    let err: unknown;
    try {
      parseWith(Schema, { site: '', drives: [{ id: 'x' }] }, 'pool request');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidInputError);
    const e = err as InvalidInputError;
    expect(e.type).toBe('InvalidInput');
    expect(e.message).toMatch(/^invalid pool request: site: .+; drives\[0\]\.id: .+$/);
    expect(e.issues.map((i) => i.path)).toEqual(['site', 'drives[0].id']);
  });

  it('names the whole input as (input) when the problem has no path', () => {
    expect(() => parseWith(z.string(), 42, 'backup id')).toThrow(/^invalid backup id: \(input\): /);
  });
});
