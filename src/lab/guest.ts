/**
 * A lab VM's guest writing to its volumes as an application inside it would, through the lab's
 * stand-in for a guest agent's file-system freeze: each write waits while the guest is frozen, and
 * a freeze waits for the writes in flight (docs/adr/037). The lab's own workloads and the tests of
 * whole-VM images write through it.
 */
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import type { KuraPaths } from '../config/paths';
import { labVolumePath } from './files';
import type { LabState } from './state';

/** Offsets of the paired counter on each volume: the first 8 bytes of the software and data volume. */
export const PAIRED_COUNTER_OFFSET = 0;

export class LabGuest {
  constructor(
    private readonly state: LabState,
    private readonly paths: KuraPaths,
    readonly site: string,
    readonly vm: string,
    private readonly volumes: { software: string; data: string },
  ) {}

  /**
   * Runs one guest write — `write` gets the volumes' files, opened for writing — once the guest is
   * not frozen; waits (polling every `pollMs`) while it is. Returns how long it waited.
   */
  async write(write: (fds: { software: number; data: number }) => void, pollMs = 1): Promise<number> {
    const t0 = Date.now();
    while (!this.state.guestBeginWrite(this.site, this.vm)) await new Promise((r) => setTimeout(r, pollMs));
    const fds = { software: this.open(this.volumes.software), data: this.open(this.volumes.data) };
    try {
      write(fds);
      // A frozen file system has flushed what was written before it: so does the guest's write.
      fsyncSync(fds.software);
      fsyncSync(fds.data);
    } finally {
      closeSync(fds.software);
      closeSync(fds.data);
      this.state.guestEndWrite(this.site, this.vm);
    }
    return Date.now() - t0;
  }

  /** Writes `n` as the paired counter on both volumes, in one guest write (software first). */
  async writePairedCounter(n: number): Promise<number> {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(n));
    return this.write((fds) => {
      writeSync(fds.software, b, 0, 8, PAIRED_COUNTER_OFFSET);
      writeSync(fds.data, b, 0, 8, PAIRED_COUNTER_OFFSET);
    });
  }

  private open(ref: string): number {
    const [array = '', volume = ''] = ref.split('/');
    return openSync(labVolumePath(this.paths, this.site, array, volume), 'r+');
  }
}

/** The paired counter as a volume image holds it. */
export function readPairedCounter(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(8);
    readSync(fd, b, 0, 8, PAIRED_COUNTER_OFFSET);
    return Number(b.readBigUInt64BE());
  } finally {
    closeSync(fd);
  }
}
