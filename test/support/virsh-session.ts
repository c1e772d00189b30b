/**
 * One long-lived `virsh` connection for the libvirt driver's tests. libvirt's `test:///` hypervisor
 * keeps its domains in the connection, so a domain defined by one `virsh` process is gone for the
 * next; a real host's daemon keeps them. This runner sends every `virsh -c <uri> …` the driver runs
 * through one interactive `virsh` on that URI (commands on its standard input, each followed by a
 * marker on both outputs), so define, start, state, destroy and undefine act on one hypervisor, as
 * on a real host. Everything else runs as its own process.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { execRunner, type Runner } from '../../src/drivers/libvirt/run';

export interface VirshSession {
  run: Runner;
  close(): Promise<void>;
}

/** Quotes an argument for virsh's own command parser (single quotes, as a shell's). */
function quote(arg: string): string {
  if (arg.includes("'")) throw new Error(`virsh session: cannot quote ${arg}`);
  return `'${arg}'`;
}

/** Opens an interactive `virsh` on `uri`; the runner sends it the driver's `virsh -c <uri>` commands. */
export function virshSession(uri: string): VirshSession {
  const child: ChildProcessWithoutNullStreams = spawn('virsh', ['-q', '-c', uri], { stdio: 'pipe' });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  let n = 0;
  let queue: Promise<unknown> = Promise.resolve();

  const send = async (args: string[]) => {
    n += 1;
    // The marker as echoed back (`KURA,7`) differs from the command that asks for it (`KURA,,7`).
    const mark = `KURA,${n}`;
    child.stdin.write(`${args.map(quote).join(' ')}\necho --err --split KURA,,${n}\necho --split KURA,,${n}\n`);
    const deadline = Date.now() + 60_000;
    while (!(out.includes(mark) && err.includes(`error: ${mark}`))) {
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`virsh session ended or hung: ${out.slice(-500)} ${err.slice(-500)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    const stdoutAll = out.slice(0, out.indexOf(mark));
    const stderrAll = err.slice(0, err.indexOf(`error: ${mark}`));
    out = out.slice(out.indexOf(mark) + mark.length).replace(/^\n/, '');
    err = err.slice(err.indexOf(`error: ${mark}`) + `error: ${mark}`.length).replace(/^\n/, '');
    // The interactive shell echoes its prompt and each command line; neither is the command's output.
    const stdout = stdoutAll
      .split('\n')
      .filter((l) => !l.startsWith('virsh #'))
      .join('\n');
    const stderr = stderrAll.trim();
    if (/(^|\n)error:/.test(stderr)) {
      const e = new Error(`virsh ${args.join(' ')}: ${stderr}`) as Error & { stderr: string };
      e.stderr = stderr;
      throw e;
    }
    return { stdout, stderr };
  };

  const run: Runner = (file, args) => {
    if (file !== 'virsh' || args[0] !== '-c' || args[1] !== uri) return execRunner(file, args);
    const next = queue.then(() => send(args.slice(2)));
    queue = next.catch(() => undefined);
    return next;
  };

  return {
    run,
    close: async () => {
      child.stdin.end('quit\n');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    },
  };
}
