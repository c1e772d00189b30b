/** FUSE mount points under an array's directory: finding them and taking down the ones a dead daemon left. */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Mount points (absolute paths) at or below `dir`, from /proc/self/mountinfo. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(prefix));
}

/**
 * Unmounts `mountpoint` when something is mounted there. A FUSE mount whose daemon was killed
 * answers every access with ENOTCONN until unmounted; lazily, when a reader still holds it open.
 */
export async function unmountIfMounted(mountpoint: string): Promise<boolean> {
  const dir = mountpoint.slice(0, mountpoint.lastIndexOf('/')) || '/';
  if (!(await mountsUnder(dir)).includes(mountpoint)) return false;
  try {
    await run('umount', [mountpoint]);
  } catch {
    await run('umount', ['-l', mountpoint]);
  }
  return true;
}
