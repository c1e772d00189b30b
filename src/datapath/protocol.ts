/**
 * The NBD wire protocol as the datapath speaks it: constants of the fixed newstyle handshake and
 * the transmission phase (simple replies only), and encoders for the messages the server sends.
 * Numbers are from the NBD protocol specification (doc/proto.md of the NBD project).
 */

/** "NBDMAGIC", the first eight bytes a server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": the newstyle magic, also in front of every option the client sends. */
export const IHAVEOPT = 0x49484156454f5054n;
/** Magic in front of every option reply. */
export const OPTION_REPLY_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

/** Handshake flags (server) and client flags. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
/**
 * Every client flag the server knows (NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES). The
 * specification: the server MUST close the connection if it does not recognise the client's flags.
 */
export const KNOWN_CLIENT_FLAGS = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES;

/** The longest string (an export name, a message) the specification allows. */
export const MAX_STRING_BYTES = 4096;

/** Options a client may send during the handshake. */
export const Opt = {
  ExportName: 1,
  Abort: 2,
  List: 3,
  StartTls: 5,
  Info: 6,
  Go: 7,
  StructuredReply: 8,
  ListMetaContext: 9,
  SetMetaContext: 10,
  ExtendedHeaders: 11,
} as const;

/** Option reply types; errors have the high bit set. */
export const Rep = {
  Ack: 1,
  Server: 2,
  Info: 3,
  ErrUnsup: 2 ** 31 + 1,
  ErrPolicy: 2 ** 31 + 2,
  ErrInvalid: 2 ** 31 + 3,
  /** The server requires TLS before this option (NBD_REP_ERR_TLS_REQD). */
  ErrTlsReqd: 2 ** 31 + 5,
  ErrUnknown: 2 ** 31 + 6,
  /** The request or the reply is too large to process. */
  ErrTooBig: 2 ** 31 + 9,
} as const;

const OPTION_NAMES: Record<number, string> = {
  [Opt.ExportName]: 'NBD_OPT_EXPORT_NAME',
  [Opt.Abort]: 'NBD_OPT_ABORT',
  [Opt.List]: 'NBD_OPT_LIST',
  [Opt.StartTls]: 'NBD_OPT_STARTTLS',
  [Opt.Info]: 'NBD_OPT_INFO',
  [Opt.Go]: 'NBD_OPT_GO',
  [Opt.StructuredReply]: 'NBD_OPT_STRUCTURED_REPLY',
  [Opt.ListMetaContext]: 'NBD_OPT_LIST_META_CONTEXT',
  [Opt.SetMetaContext]: 'NBD_OPT_SET_META_CONTEXT',
  [Opt.ExtendedHeaders]: 'NBD_OPT_EXTENDED_HEADERS',
};

/** `NBD_OPT_GO` for 7: an option's name as the specification spells it, for messages and logs. */
export function optionName(opt: number): string {
  return OPTION_NAMES[opt] ?? `option ${opt}`;
}

/** The data of NBD_OPT_INFO and NBD_OPT_GO: the export's name and the information types asked for. */
export interface InfoRequest {
  name: string;
  requests: number[];
}

/**
 * Parses the data of NBD_OPT_INFO or NBD_OPT_GO (32-bit name length, name, 16-bit count, that
 * many 16-bit information types), checking every length against the data's size: a client's
 * numbers never index past what it sent. Returns why it is malformed, for NBD_REP_ERR_INVALID.
 */
export function parseInfoRequest(data: Buffer): InfoRequest | { malformed: string } {
  if (data.length < 6)
    return { malformed: `${data.length} bytes cannot hold a name length and an information-request count` };
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6)
    return { malformed: `the name length ${nameLength} runs past the ${data.length} bytes of the option` };
  if (nameLength > MAX_STRING_BYTES)
    return { malformed: `the name is ${nameLength} bytes, more than the ${MAX_STRING_BYTES} a name may have` };
  const count = data.readUInt16BE(4 + nameLength);
  const left = data.length - 6 - nameLength;
  if (2 * count > left)
    return {
      malformed: `${count} information request${count === 1 ? '' : 's'} need${count === 1 ? 's' : ''} ${2 * count} bytes after the name, but the option has ${left} left`,
    };
  if (2 * count < left)
    return {
      malformed: `${left - 2 * count} bytes follow the ${count} information request${count === 1 ? '' : 's'}`,
    };
  const requests = Array.from({ length: count }, (_, i) => data.readUInt16BE(6 + nameLength + 2 * i));
  return { name: data.toString('utf8', 4, 4 + nameLength), requests };
}

/** Information types in NBD_REP_INFO. */
export const Info = { Export: 0, Name: 1, Description: 2, BlockSize: 3 } as const;

/** Transmission flags: what the export supports. */
export const TxFlag = {
  HasFlags: 1 << 0,
  ReadOnly: 1 << 1,
  SendFlush: 1 << 2,
  SendFua: 1 << 3,
  SendTrim: 1 << 5,
  SendWriteZeroes: 1 << 6,
  CanMultiConn: 1 << 8,
} as const;

/** Commands of the transmission phase. */
export const Cmd = { Read: 0, Write: 1, Disc: 2, Flush: 3, Trim: 4, Cache: 5, WriteZeroes: 6, BlockStatus: 7 } as const;

/** Command flags. */
export const CmdFlag = { Fua: 1 << 0, NoHole: 1 << 1 } as const;

/** Error values of a simple reply (errno numbers, as the specification fixes them). */
export const NbdErr = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** The largest request payload the server accepts (what it advertises as the maximum block size). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/**
 * The flags every Kura export announces: flush, FUA, trim and write-zeroes are supported, and so
 * are several connections to one export (multi-conn): they share the volume — one file, one
 * journal, one snapshot — so a read on any connection sees every write acknowledged on any other,
 * and a FLUSH on one makes every acknowledged write durable (in passthrough its fdatasync covers
 * the whole file; in backup mode each write was durable before its ack).
 */
export const EXPORT_FLAGS =
  TxFlag.HasFlags | TxFlag.SendFlush | TxFlag.SendFua | TxFlag.SendTrim | TxFlag.SendWriteZeroes | TxFlag.CanMultiConn;

/** The server's greeting: NBDMAGIC, IHAVEOPT and the handshake flags. */
export function greeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  return b;
}

/** One option reply: magic, the option it answers, its type and data. */
export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(data.length, 16);
  return Buffer.concat([h, data]);
}

/** NBD_INFO_EXPORT: size and transmission flags. */
export function infoExport(size: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(Info.Export, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

/** NBD_INFO_BLOCK_SIZE: any alignment works; 4 KiB is preferred (the snapshot's block). */
export function infoBlockSize(preferred: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(Info.BlockSize, 0);
  b.writeUInt32BE(1, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(MAX_REQUEST_BYTES, 10);
  return b;
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes unless the client said NO_ZEROES. */
export function exportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : 124));
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

/** A request of the transmission phase (its payload, for writes, follows on the wire). */
export interface NbdRequest {
  flags: number;
  type: number;
  /** The client's opaque cookie, echoed in the reply: its first and last four bytes (big-endian). */
  handleHi: number;
  handleLo: number;
  offset: number;
  length: number;
}

/** Parses the 28-byte request header; null when the magic is wrong (the connection is then closed). */
export function parseRequest(b: Buffer): NbdRequest | null {
  if (b.readUInt32BE(0) !== REQUEST_MAGIC) return null;
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    // As numbers, not a copy of the bytes and a BigInt: nothing allocated for them per request.
    handleHi: b.readUInt32BE(8),
    handleLo: b.readUInt32BE(12),
    // Exact up to 2^53; an offset past that lies past every volume and is refused for its range.
    offset: b.readUInt32BE(16) * 0x1_0000_0000 + b.readUInt32BE(20),
    length: b.readUInt32BE(24),
  };
}

/** Bytes of a simple reply's header. */
export const SIMPLE_REPLY_BYTES = 16;

/** A simple reply header; read replies are followed by the data. */
export function simpleReply(req: Pick<NbdRequest, 'handleHi' | 'handleLo'>, error: number): Buffer {
  return simpleReplyInto(Buffer.allocUnsafe(SIMPLE_REPLY_BYTES), req, error);
}

/** Writes a simple reply header into the first 16 bytes of `b` (a read's reply, its data after it); returns `b`. */
export function simpleReplyInto(b: Buffer, req: Pick<NbdRequest, 'handleHi' | 'handleLo'>, error: number): Buffer {
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeUInt32BE(req.handleHi, 8);
  b.writeUInt32BE(req.handleLo, 12);
  return b;
}
