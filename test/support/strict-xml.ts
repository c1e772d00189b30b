/**
 * A small strict XML reader for checking the report's inline SVGs: elements must nest and close,
 * attributes must be quoted and unique, and only the five XML entities (or numeric ones) may
 * appear; anything else throws with the offset. Returns the element tree.
 */

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const NAME = /^[A-Za-z_][\w.:-]*/;

function checkText(text: string, at: number): string {
  for (const m of text.matchAll(/&([^;\s]*);?/g)) {
    const ent = m[0];
    if (!/^&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);$/.test(ent))
      throw new Error(`bad entity ${JSON.stringify(ent)} near offset ${at + (m.index ?? 0)}`);
  }
  if (text.includes('<')) throw new Error(`stray "<" near offset ${at}`);
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** Parses one XML document (one root element, optional surrounding whitespace). */
export function parseXml(src: string): XmlElement {
  const root: XmlElement = { name: '#document', attrs: {}, children: [], text: '' };
  const stack: XmlElement[] = [root];
  let i = 0;
  while (i < src.length) {
    const lt = src.indexOf('<', i);
    const textEnd = lt === -1 ? src.length : lt;
    const text = src.slice(i, textEnd);
    if (text.length > 0) {
      const top = stack.at(-1)!;
      if (top === root && text.trim() !== '') throw new Error(`text outside the root element at offset ${i}`);
      top.text += checkText(text, i);
    }
    if (lt === -1) break;
    if (src.startsWith('<!--', lt)) {
      const end = src.indexOf('-->', lt);
      if (end === -1) throw new Error(`unclosed comment at offset ${lt}`);
      i = end + 3;
      continue;
    }
    if (src[lt + 1] === '/') {
      const end = src.indexOf('>', lt);
      const name = src.slice(lt + 2, end).trim();
      const open = stack.pop();
      if (!open || open === root || open.name !== name)
        throw new Error(`</${name}> at offset ${lt} closes <${open?.name ?? 'nothing'}>`);
      i = end + 1;
      continue;
    }
    let j = lt + 1;
    const nm = NAME.exec(src.slice(j));
    if (!nm) throw new Error(`bad tag name at offset ${lt}`);
    const el: XmlElement = { name: nm[0], attrs: {}, children: [], text: '' };
    j += nm[0].length;
    for (;;) {
      const ws = /^\s*/.exec(src.slice(j))![0].length;
      j += ws;
      if (src.startsWith('/>', j)) {
        j += 2;
        stack.at(-1)!.children.push(el);
        break;
      }
      if (src[j] === '>') {
        j += 1;
        stack.at(-1)!.children.push(el);
        stack.push(el);
        break;
      }
      if (ws === 0) throw new Error(`attributes of <${el.name}> need whitespace between them at offset ${j}`);
      const an = NAME.exec(src.slice(j));
      if (!an) throw new Error(`bad attribute in <${el.name}> at offset ${j}`);
      j += an[0].length;
      if (src[j] !== '=' || (src[j + 1] !== '"' && src[j + 1] !== "'"))
        throw new Error(`attribute ${an[0]} of <${el.name}> is not quoted at offset ${j}`);
      const q = src[j + 1]!;
      const close = src.indexOf(q, j + 2);
      if (close === -1) throw new Error(`unclosed attribute ${an[0]} at offset ${j}`);
      if (an[0] in el.attrs) throw new Error(`attribute ${an[0]} repeated in <${el.name}> at offset ${j}`);
      el.attrs[an[0]] = checkText(src.slice(j + 2, close), j + 2);
      j = close + 1;
    }
    i = j;
  }
  if (stack.length !== 1) throw new Error(`<${stack.at(-1)!.name}> is never closed`);
  if (root.children.length !== 1) throw new Error(`expected one root element, found ${root.children.length}`);
  return root.children[0]!;
}

/** Every element of a tree, depth first. */
export function allElements(el: XmlElement): XmlElement[] {
  return [el, ...el.children.flatMap(allElements)];
}
