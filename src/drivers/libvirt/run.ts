/**
 * Runs the host tools the libvirt driver drives (`virsh`, `qemu-img`) with argument arrays —
 * never a shell string — and turns a failure into a DeviceFaultError that carries the tool's own
 * message, so an operator sees what libvirt or QEMU said.
 */
import { execFile } from 'node:child_process';
import { DeviceFaultError, NotFoundError } from '../../domain/errors';

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a program with arguments; rejects with the program's error output. */
export type Runner = (file: string, args: string[]) => Promise<RunResult>;

/** The real runner: execFile with a time limit and a bounded output buffer. */
export const execRunner: Runner = (file, args) =>
  new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { stderr?: string };
        e.stderr = stderr;
        reject(e);
      } else resolve({ stdout, stderr });
    });
  });

/**
 * Runs `file args…` for a device; a missing program is NotFound (install it), any other failure a
 * DeviceFault naming the device and quoting the program's first error line.
 */
export async function runTool(
  run: Runner,
  device: string,
  file: string,
  args: string[],
  what: string,
): Promise<RunResult> {
  try {
    return await run(file, args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT')
      throw new NotFoundError(
        `${file} is not installed; install libvirt-clients and qemu-utils (the setup script does on Debian)`,
        { file },
      );
    const said =
      (e.stderr ?? e.message)
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .join(' ') || e.message;
    throw new DeviceFaultError(device, `${what} failed: ${said}`, err);
  }
}
