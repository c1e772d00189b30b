/** Parsing of NBD_OPT_INFO / NBD_OPT_GO data: every length a client sends is checked against what it sent. */
import { describe, expect, it } from 'vitest';
import { Opt, optionName, parseInfoRequest } from '../../src/datapath/protocol';

/** Name length, name, count, requests — with the count or name length overridable to lie. */
function goData(name: string, requests: number[], o: { count?: number; nameLength?: number; extra?: number } = {}) {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length + 2 + 2 * requests.length + (o.extra ?? 0));
  b.writeUInt32BE(o.nameLength ?? n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(o.count ?? requests.length, 4 + n.length);
  requests.forEach((r, i) => b.writeUInt16BE(r, 6 + n.length + 2 * i));
  return b;
}

describe('parseInfoRequest', () => {
  it('reads the name and the information types of well-formed data', () => {
    expect(parseInfoRequest(goData('array-01/vm-001-data', [3, 1]))).toEqual({
      name: 'array-01/vm-001-data',
      requests: [3, 1],
    });
    expect(parseInfoRequest(goData('', []))).toEqual({ name: '', requests: [] });
  });

  it.each([
    [
      'data shorter than its fixed fields',
      Buffer.alloc(5),
      '5 bytes cannot hold a name length and an information-request count',
    ],
    [
      'a name length past the data',
      goData('abc', [], { nameLength: 2 ** 32 - 1 }),
      'the name length 4294967295 runs past the 9 bytes of the option',
    ],
    [
      'a name that leaves no room for the count',
      goData('abcd', [], { nameLength: 5 }),
      'the name length 5 runs past the 10 bytes of the option',
    ],
    [
      'a count past the data',
      goData('a', [7], { count: 65535 }),
      '65535 information requests need 131070 bytes after the name, but the option has 2 left',
    ],
    ['bytes after the last request', goData('a', [7], { extra: 3 }), '3 bytes follow the 1 information request'],
    [
      'a name longer than the specification allows',
      goData('x'.repeat(4097), []),
      'the name is 4097 bytes, more than the 4096 a name may have',
    ],
  ])('refuses %s, saying why', (_what, data, why) => {
    expect(parseInfoRequest(data)).toEqual({ malformed: why });
  });
});

describe('optionName', () => {
  it('spells options as the specification does', () => {
    expect(optionName(Opt.Go)).toBe('NBD_OPT_GO');
    expect(optionName(Opt.ExportName)).toBe('NBD_OPT_EXPORT_NAME');
    expect(optionName(Opt.SetMetaContext)).toBe('NBD_OPT_SET_META_CONTEXT');
    expect(optionName(Opt.StartTls)).toBe('NBD_OPT_STARTTLS');
    expect(optionName(99)).toBe('option 99');
  });
});
