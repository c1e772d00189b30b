/** A small ext4 file system on a loop device, mounted over a directory of a test lab, for the tests of a full disk. */
import { execFileSync } from 'node:child_process';

export class SmallFileSystem {
  private mounted = true;

  private constructor(readonly at: string) {}

  /** Makes a file system of `size` (as `truncate -s` reads it) in the file `image` and mounts it at `at`. */
  static mount(image: string, at: string, size = '4M'): SmallFileSystem {
    execFileSync('truncate', ['-s', size, image]);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    execFileSync('mount', ['-o', 'loop', image, at]);
    return new SmallFileSystem(at);
  }

  /** Unmounts it, which also detaches the loop device `mount -o loop` set up; a second call does nothing. */
  unmount(): void {
    if (!this.mounted) return;
    execFileSync('umount', [this.at]);
    this.mounted = false;
  }
}
