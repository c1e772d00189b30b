/**
 * A strict, small XML parser for tests: elements, attributes, text, comments, CDATA, the XML
 * declaration and the five predefined entities plus character references. It refuses what is not
 * well-formed (unclosed or mismatched tags, unquoted or repeated attributes, a bare `&` or `<`, text
 * or a second element outside the root), so a test that reads a document through it also checks
 * the document is XML.
 */

export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The element's own text, its children's left out. */
  text: string;
}

const NAME = /[A-Za-z_:][-A-Za-z0-9._:]*/y;
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Parses a document; throws an Error naming the offset of the first problem. */
export function parseXml(source: string): XmlElement {
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`not well-formed XML at offset ${i}: ${what} (near ${JSON.stringify(source.slice(i, i + 30))})`);
  };
  const skipSpace = () => {
    while (i < source.length && /\s/.test(source[i]!)) i++;
  };
  const name = (): string => {
    NAME.lastIndex = i;
    const m = NAME.exec(source);
    if (!m) return fail('a name was expected');
    i += m[0].length;
    return m[0];
  };
  const decode = (raw: string): string => {
    if (raw.includes('<')) fail('a bare "<" in text or an attribute');
    return raw.replace(/&([^;]*);|&/g, (whole, ref: string | undefined) => {
      if (ref === undefined) return fail('a bare "&" (write &amp;)');
      if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
      if (ref.startsWith('#')) return String.fromCodePoint(parseInt(ref.slice(1), 10));
      const known = ENTITIES[ref];
      return known ?? fail(`an unknown entity &${ref};`);
    });
  };
  const skipMisc = () => {
    for (;;) {
      skipSpace();
      if (source.startsWith('<!--', i)) {
        const end = source.indexOf('-->', i + 4);
        if (end < 0) fail('an unclosed comment');
        i = end + 3;
      } else if (source.startsWith('<?', i)) {
        const end = source.indexOf('?>', i + 2);
        if (end < 0) fail('an unclosed processing instruction');
        i = end + 2;
      } else return;
    }
  };
  const element = (): XmlElement => {
    if (source[i] !== '<') fail('"<" was expected');
    i++;
    const el: XmlElement = { name: name(), attributes: {}, children: [], text: '' };
    for (;;) {
      const before = i;
      skipSpace();
      if (source.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (source[i] === '>') {
        i++;
        break;
      }
      if (i === before) fail('a space was expected between attributes');
      const key = name();
      skipSpace();
      if (source[i] !== '=') fail(`"=" was expected after attribute ${key}`);
      i++;
      skipSpace();
      const quote = source[i];
      if (quote !== '"' && quote !== "'") fail(`the value of attribute ${key} is not quoted`);
      const end = source.indexOf(quote!, i + 1);
      if (end < 0) fail(`the value of attribute ${key} is not closed`);
      if (key in el.attributes) fail(`attribute ${key} is repeated`);
      el.attributes[key] = decode(source.slice(i + 1, end));
      i = end + 1;
    }
    for (;;) {
      if (i >= source.length) fail(`element <${el.name}> is not closed`);
      if (source.startsWith('</', i)) {
        i += 2;
        const closing = name();
        if (closing !== el.name) fail(`</${closing}> closes <${el.name}>`);
        skipSpace();
        if (source[i] !== '>') fail('">" was expected');
        i++;
        return el;
      }
      if (source.startsWith('<!--', i)) {
        const end = source.indexOf('-->', i + 4);
        if (end < 0) fail('an unclosed comment');
        i = end + 3;
      } else if (source.startsWith('<![CDATA[', i)) {
        const end = source.indexOf(']]>', i + 9);
        if (end < 0) fail('an unclosed CDATA section');
        el.text += source.slice(i + 9, end);
        i = end + 3;
      } else if (source[i] === '<') {
        el.children.push(element());
      } else {
        const end = source.indexOf('<', i);
        el.text += decode(source.slice(i, end < 0 ? source.length : end));
        i = end < 0 ? source.length : end;
      }
    }
  };
  skipMisc();
  const root = element();
  skipMisc();
  if (i < source.length) fail('content after the root element');
  return root;
}

/** Every element below (and including) `root` for which `match` holds, in document order. */
export function findAll(root: XmlElement, match: (e: XmlElement) => boolean): XmlElement[] {
  const out: XmlElement[] = [];
  const walk = (e: XmlElement) => {
    if (match(e)) out.push(e);
    e.children.forEach(walk);
  };
  walk(root);
  return out;
}

/** Elements carrying a class. */
export function byClass(root: XmlElement, cls: string): XmlElement[] {
  return findAll(root, (e) => (e.attributes.class ?? '').split(/\s+/).includes(cls));
}
