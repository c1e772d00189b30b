/**
 * The closed vocabulary of Kura's failures. Every error that crosses a boundary carries one of
 * these types, a message a person can act on, and whether retrying could help.
 */

export const ErrorType = {
  /** A request, a flag or a file is malformed. Retrying the same input cannot help. */
  InvalidInput: 'InvalidInput',
  /** The configuration file (kura.yaml) does not validate. */
  ConfigInvalid: 'ConfigInvalid',
  /** A named thing (target, backup, device, VM) does not exist. */
  NotFound: 'NotFound',
  /** A path is not zoned or a LUN is not masked for the host, or a destination is forbidden. */
  AccessDenied: 'AccessDenied',
  /** The pool cannot grant the resources asked for. */
  NoResources: 'NoResources',
  /** A device failed while working; another attempt or another device may succeed. */
  DeviceFault: 'DeviceFault',
  /** A cartridge has no room left for the data. */
  TapeFull: 'TapeFull',
  /** Data read back does not match the checksum recorded when it was written. */
  ChecksumMismatch: 'ChecksumMismatch',
  /** The restore destination already exists; Kura never overwrites data silently. */
  DestinationExists: 'DestinationExists',
  /** The same job is already running (its workflow id is taken). */
  AlreadyRunning: 'AlreadyRunning',
  /** The Temporal server or a Kura service does not answer. */
  Unavailable: 'Unavailable',
  /** The request needs a job in a state it is not in (e.g. resolve when no ladder waits for a person). */
  NotWaiting: 'NotWaiting',
  /** The VM is being recovered; what was asked must wait until the ladder ends. */
  InRecovery: 'InRecovery',
  /** The job was cancelled by a person or by its caller before it finished. */
  Cancelled: 'Cancelled',
  /**
   * An application hook did not answer within its timeout (the database did not enter backup
   * mode): the operation stopped before any split or snapshot.
   */
  HookTimeout: 'HookTimeout',
  /**
   * A payload was encrypted under a key this installation's key file does not hold, or the key of
   * that id does not decrypt it; the key id is named. Adding the key to the key file cures it.
   */
  KeyUnavailable: 'KeyUnavailable',
  /** The key file is missing, unreadable, malformed or readable by others than its owner. */
  KeyFileInvalid: 'KeyFileInvalid',
  /**
   * Work of one installation reached a worker of another (a task queue or a client set up for the
   * wrong kura.yaml): the worker refused it before touching any device.
   */
  WrongInstallation: 'WrongInstallation',
  /**
   * A whole-VM image could not be kept at one instant: the guest's freeze ran out (or its snapshot
   * went) before both volumes were read. Nothing of it is kept; another attempt starts afresh.
   */
  ImageInconsistent: 'ImageInconsistent',
  /**
   * A file system Kura writes to (a store, an image directory) has no space left: the write stopped
   * and nothing was recorded as done. Freeing space there, or growing it, and running the job again cures it.
   */
  StorageFull: 'StorageFull',
} as const;
export type ErrorType = (typeof ErrorType)[keyof typeof ErrorType];

/** Failure types that no retry can cure; activities raise them as non-retryable failures. */
export const NON_RETRYABLE_ERROR_TYPES: readonly ErrorType[] = [
  ErrorType.InvalidInput,
  ErrorType.ConfigInvalid,
  ErrorType.NotFound,
  ErrorType.AccessDenied,
  ErrorType.NoResources,
  ErrorType.TapeFull,
  ErrorType.ChecksumMismatch,
  ErrorType.DestinationExists,
  ErrorType.AlreadyRunning,
  ErrorType.NotWaiting,
  ErrorType.InRecovery,
  ErrorType.HookTimeout,
  ErrorType.KeyFileInvalid,
  ErrorType.WrongInstallation,
  ErrorType.ImageInconsistent,
  ErrorType.StorageFull,
];

/** A problem found while validating input, with the path to the offending value. */
export interface Issue {
  /** Where the problem is, e.g. `sites[0].libraries[1].drives[3].id`; empty for the whole input. */
  path: string;
  message: string;
}

/** Base of every Kura error: a type from {@link ErrorType}, an actionable message, a cause. */
export class KuraError extends Error {
  override name = 'KuraError';
  constructor(
    readonly type: ErrorType,
    message: string,
    options?: { cause?: unknown; issues?: Issue[]; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.issues = options?.issues ?? [];
    this.details = options?.details ?? {};
  }
  readonly issues: Issue[];
  readonly details: Record<string, unknown>;
  /** Whether trying again (later, or on other hardware) could succeed. */
  get retryable(): boolean {
    return !NON_RETRYABLE_ERROR_TYPES.includes(this.type);
  }
}

/**
 * The base of a Kura error that carries only a message and details naming what it is about: each
 * such error below is declared in one line, with its name and its type side by side.
 */
function detailedError(errorName: string, type: ErrorType) {
  return class extends KuraError {
    override name = errorName;
    constructor(message: string, details: Record<string, unknown> = {}) {
      super(type, message, { details });
    }
  };
}

export class InvalidInputError extends KuraError {
  override name = 'InvalidInputError';
  constructor(message: string, issues: Issue[] = [], cause?: unknown) {
    super(ErrorType.InvalidInput, message, { issues, cause });
  }
}

export class ConfigInvalidError extends KuraError {
  override name = 'ConfigInvalidError';
  constructor(
    readonly file: string,
    issues: Issue[],
  ) {
    super(
      ErrorType.ConfigInvalid,
      `${file} is not valid (${issues.length} problem${issues.length === 1 ? '' : 's'}); nothing was started. Fix each of these and run again:\n` +
        issues.map((i) => `  ${file}: ${i.path || '(top level)'}: ${i.message}`).join('\n'),
      { issues },
    );
  }
}

/** A named thing (target, backup, device, VM) does not exist. */
export class NotFoundError extends detailedError('NotFoundError', ErrorType.NotFound) {}

/** A path is not zoned or a LUN is not masked for the host, or a destination is forbidden. */
export class AccessDeniedError extends detailedError('AccessDeniedError', ErrorType.AccessDenied) {}

/** The pool cannot grant the resources asked for. */
export class NoResourcesError extends detailedError('NoResourcesError', ErrorType.NoResources) {}

/** A device (drive, tape, switch, server, copy device) failed; the device is named. */
export class DeviceFaultError extends KuraError {
  override name = 'DeviceFaultError';
  constructor(
    readonly device: string,
    message: string,
    cause?: unknown,
  ) {
    super(ErrorType.DeviceFault, message, { cause, details: { device } });
  }
}

/** A cartridge has no room left for the data. */
export class TapeFullError extends detailedError('TapeFullError', ErrorType.TapeFull) {}

/** Data read back does not match the checksum recorded when it was written. */
export class ChecksumMismatchError extends detailedError('ChecksumMismatchError', ErrorType.ChecksumMismatch) {}

/** The restore destination already exists; Kura never overwrites data silently. */
export class DestinationExistsError extends detailedError('DestinationExistsError', ErrorType.DestinationExists) {}

/** The job is not in the state the request needs; the message says which state it is in. */
export class NotWaitingError extends detailedError('NotWaitingError', ErrorType.NotWaiting) {}

/** An application hook did not answer within its timeout; the hook and the timeout are named. */
export class HookTimeoutError extends detailedError('HookTimeoutError', ErrorType.HookTimeout) {}

/** A whole-VM image lost its one instant before both volumes were read; the VM and the bound are named. */
export class ImageInconsistentError extends detailedError('ImageInconsistentError', ErrorType.ImageInconsistent) {}

/** A payload's key is not in the key file, or does not decrypt it; `details.keyId` names the key. */
export class KeyUnavailableError extends KuraError {
  override name = 'KeyUnavailableError';
  constructor(
    readonly keyId: string,
    message: string,
    cause?: unknown,
  ) {
    super(ErrorType.KeyUnavailable, message, { cause, details: { keyId } });
  }
}

/** The key file is missing, malformed or open to others; the file is named with the way to fix it. */
export class KeyFileInvalidError extends detailedError('KeyFileInvalidError', ErrorType.KeyFileInvalid) {}

/** Renders zod-style issue paths (`['sites', 0, 'vms', 3, 'name']`) as `sites[0].vms[3].name`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}
