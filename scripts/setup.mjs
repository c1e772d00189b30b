// Makes a fresh clone ready to run: installs the npm dependencies when they are missing or stale,
// and provides the Temporal CLI (which holds the dev server and the Web UI) at .tools/bin/temporal.
//
// Why it builds the server: Kura must set itself up where only package registries are reachable
// (no release binaries, no container engine), so the CLI is built from source with `go install`,
// which fetches only through the Go module proxy (docs/adr/001-temporal-server-from-source.md). The first build takes minutes on two
// cores, so it shows progress; later runs find the binary and skip.
//
// This file runs before `npm install`, so it uses nothing but Node's standard library.
// Usage: node scripts/setup.mjs [--for-tests]
//   --for-tests  always provide a local server binary, even when TEMPORAL_ADDRESS is set.
// Environment: KURA_TEMPORAL_BIN (use this binary), TEMPORAL_ADDRESS (a running server).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const forTests = process.argv.includes('--for-tests');
const toolsBin = path.join(root, '.tools', 'bin');
const localTemporal = path.join(toolsBin, process.platform === 'win32' ? 'temporal.exe' : 'temporal');
const CLI_PACKAGE = 'github.com/temporalio/cli/cmd/temporal';
// Newest first. Each tag's go.mod has no `replace` directive, which `go install pkg@version` refuses.
const CLI_VERSIONS = ['v1.5.1', 'v1.5.0', 'v1.4.1'];
const LOG_TAIL = 30;

class SetupError extends Error {
  name = 'SetupError';
}

const seconds = (since) => `${((Date.now() - since) / 1000).toFixed(1)}s`;

/** Runs one named step, printing its start, its outcome and how long it took. */
async function step(title, fn) {
  const started = Date.now();
  console.log(`setup: ${title} ...`);
  const outcome = await fn();
  console.log(`setup: ${title}: ${outcome} (${seconds(started)})`);
  return outcome;
}

/** Runs a command with inherited stdio; resolves with its exit code (a spawn error counts as 127). */
function run(command, args) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, stdio: 'inherit' });
    child.on('error', () => resolve(127));
    child.on('close', (code) => resolve(code ?? 1));
  });
}

/** Why node_modules must be (re)installed, or undefined when it is current. */
function staleDependencies() {
  const marker = path.join(root, 'node_modules', '.package-lock.json');
  if (!fs.existsSync(marker)) return 'node_modules is missing or incomplete';
  const installedAt = fs.statSync(marker).mtimeMs;
  for (const file of ['package.json', 'package-lock.json']) {
    const p = path.join(root, file);
    if (fs.existsSync(p) && fs.statSync(p).mtimeMs > installedAt) return `${file} changed since the last install`;
  }
  return undefined;
}

async function ensureDependencies() {
  const reason = staleDependencies();
  if (!reason) return 'up to date';
  // `npm install` installs the versions package-lock.json pins. Not `npm ci`: npm 11 writes lock
  // files without the other platforms' optional packages (e.g. @swc/core-darwin-arm64) and then
  // its own `npm ci` refuses them as out of sync.
  const args = ['install', '--no-audit', '--no-fund'];
  console.log(`setup: ${reason}; running npm ${args[0]}`);
  const code = await run(process.platform === 'win32' ? 'npm.cmd' : 'npm', args);
  if (code !== 0) throw new SetupError(`npm ${args[0]} failed with exit code ${code}`);
  // npm may leave the hidden lockfile older than a package-lock.json it rewrote; mark it current
  // so the next run does not install again.
  const marker = path.join(root, 'node_modules', '.package-lock.json');
  if (fs.existsSync(marker)) fs.utimesSync(marker, new Date(), new Date());
  return `installed with npm ${args[0]}`;
}

/** `temporal --version` of a binary, or undefined when it does not run. */
function temporalVersion(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) return undefined;
  return r.stdout.trim().replace(/^temporal version\s+/, '');
}

/** The Go toolchain to build with: `go` on PATH, else Go's default install location. */
function findGo() {
  for (const candidate of ['go', '/usr/local/go/bin/go']) {
    const r = spawnSync(candidate, ['version'], { encoding: 'utf8' });
    if (r.status === 0) return { bin: candidate, version: r.stdout.trim() };
  }
  return undefined;
}

/**
 * Builds one tag of the Temporal CLI into .tools/bin. `go install -v` names each package as it
 * compiles it (and `go: downloading …` for each module it fetches), which is the only progress
 * signal Go gives; the count is printed every 25 lines, or on one updating line on a terminal.
 */
function goInstall(go, version) {
  return new Promise((resolve) => {
    const started = Date.now();
    const tail = [];
    let packages = 0;
    let downloads = 0;
    let partial = '';
    const tty = process.stdout.isTTY;
    const report = () => {
      const line = `  ${version}: ${packages} packages compiled, ${downloads} modules downloaded, ${seconds(started)}`;
      if (tty) process.stdout.write(`\r${line}`);
      else console.log(line);
    };
    // The final link prints nothing for a while; say that the build is still alive.
    const heartbeat = setInterval(report, tty ? 1_000 : 30_000);
    const onData = (chunk) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines.filter((l) => l.trim() !== '')) {
        tail.push(line);
        if (tail.length > LOG_TAIL) tail.shift();
        if (line.startsWith('go: downloading ')) downloads += 1;
        else if (!line.startsWith('go: ') && !line.includes(' ')) packages += 1;
        else continue;
        if (tty || (packages + downloads) % 25 === 0) report();
      }
    };
    const env = { ...process.env, GOBIN: toolsBin };
    const child = spawn(go, ['install', '-v', `${CLI_PACKAGE}@${version}`], { cwd: root, env });
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const finish = (code, error) => {
      clearInterval(heartbeat);
      if (partial.trim() !== '') tail.push(partial);
      if (error) tail.push(error.message);
      report();
      if (tty) process.stdout.write('\n');
      resolve({ code, tail });
    };
    child.on('error', (error) => finish(127, error));
    child.on('close', (code) => finish(code ?? 1));
  });
}

async function ensureTemporal() {
  const given = process.env.KURA_TEMPORAL_BIN;
  if (given) {
    const version = temporalVersion(given);
    if (!version) throw new SetupError(`KURA_TEMPORAL_BIN=${given}, but \`${given} --version\` does not run`);
    return { bin: given, version, note: 'from KURA_TEMPORAL_BIN' };
  }
  const existing = fs.existsSync(localTemporal) ? temporalVersion(localTemporal) : undefined;
  if (existing) return { bin: localTemporal, version: existing, note: 'already built' };
  if (process.env.TEMPORAL_ADDRESS && !forTests) {
    return { address: process.env.TEMPORAL_ADDRESS, note: 'no local build: TEMPORAL_ADDRESS is set' };
  }
  const go = findGo();
  if (!go) {
    throw new SetupError(
      'the Temporal dev server is built from source, and no Go toolchain was found.\n' +
        '  Install Go >= 1.24 (https://go.dev/doc/install), or set KURA_TEMPORAL_BIN to a temporal binary,\n' +
        '  or set TEMPORAL_ADDRESS to a running Temporal server (host:port).',
    );
  }
  const [, major, minor] = /go(\d+)\.(\d+)/.exec(go.version) ?? [];
  if (Number(major) === 1 && Number(minor) < 24) {
    console.log(`setup: warning: ${go.version} is older than Go 1.24, which the Temporal CLI needs`);
  }
  console.log(`setup: building the Temporal CLI with ${go.version} (minutes on a fresh machine)`);
  const failures = [];
  for (const version of CLI_VERSIONS) {
    if (failures.length > 0) console.log(`setup: ${failures.at(-1).version} failed; trying ${version}`);
    const { code, tail } = await goInstall(go.bin, version);
    const built = code === 0 ? temporalVersion(localTemporal) : undefined;
    if (built) return { bin: localTemporal, version: built, note: `built ${version}` };
    failures.push({ version, code, tail });
    console.log(`setup: go install ${CLI_PACKAGE}@${version} failed (exit ${code}); last lines:`);
    for (const line of tail) console.log(`  | ${line}`);
  }
  const last = failures.at(-1);
  throw new SetupError(
    `could not build the Temporal CLI (tried ${CLI_VERSIONS.join(', ')}).\n` +
      `  The last error (${last.version}, exit ${last.code}): ${last.tail.at(-1) ?? 'no output'}`,
  );
}

// Real protocol peers and tools from Debian: qemu-img/qemu-io (qemu-utils), nbdinfo/nbdcopy
// (libnbd-bin), nbdkit, virsh (libvirt-clients). The tests and benchmarks talk to Kura through them.
// qemu-storage-daemon (qemu-system-common, which pulls libfuse3) is the engine of `driver: qsd`
// arrays; mkfs.ext4 (e2fsprogs) puts a host's file system on a volume in their tests; PostgreSQL is
// the application kept consistent around splits and snapshots. Debian keeps PostgreSQL's server
// programs off PATH, under /usr/lib/postgresql/<version>/bin: `libDir` is looked in as well.
// chromium renders the night plan's SVG headless, so its test sees the chart is drawn.
const DEBIAN_TOOLS = [
  { bin: 'qemu-img', pkg: 'qemu-utils' },
  { bin: 'qemu-io', pkg: 'qemu-utils' },
  { bin: 'nbdinfo', pkg: 'libnbd-bin' },
  { bin: 'nbdcopy', pkg: 'libnbd-bin' },
  { bin: 'nbdkit', pkg: 'nbdkit' },
  { bin: 'virsh', pkg: 'libvirt-clients' },
  { bin: 'qemu-storage-daemon', pkg: 'qemu-system-common' },
  { bin: 'mkfs.ext4', pkg: 'e2fsprogs', sbin: true },
  { bin: 'psql', pkg: 'postgresql' },
  { bin: 'initdb', pkg: 'postgresql', libDir: '/usr/lib/postgresql' },
  { bin: 'chromium', pkg: 'chromium' },
];

const onPath = (bin) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', bin], { encoding: 'utf8' }).status === 0;

/** Whether a tool is installed: on PATH, in an sbin directory a non-root PATH may lack, or under its libDir. */
function present(tool) {
  if (onPath(tool.bin)) return true;
  if (tool.sbin && ['/usr/sbin', '/sbin'].some((d) => fs.existsSync(path.join(d, tool.bin)))) return true;
  if (!tool.libDir || !fs.existsSync(tool.libDir)) return false;
  return fs.readdirSync(tool.libDir).some((version) => fs.existsSync(path.join(tool.libDir, version, 'bin', tool.bin)));
}

/**
 * Installs the Debian packages whose tools are missing, with apt-get (as root, or through sudo
 * when it needs no password). `npm start` can run without them, so there it only warns; the tests
 * need them, so `--for-tests` fails with the command to run by hand.
 */
async function ensureDebianTools() {
  const missing = DEBIAN_TOOLS.filter((t) => !present(t));
  if (missing.length === 0) return 'present';
  const pkgs = [...new Set(missing.map((t) => t.pkg))];
  const what = `${missing.map((t) => t.bin).join(', ')} (Debian: ${pkgs.join(' ')})`;
  const isRoot = process.getuid?.() === 0;
  const sudo = !isRoot && spawnSync('sudo', ['-n', 'true']).status === 0;
  if (onPath('apt-get') && (isRoot || sudo)) {
    const apt = (args) => (isRoot ? run('apt-get', args) : run('sudo', ['-n', 'apt-get', ...args]));
    console.log(`setup: installing ${pkgs.join(' ')} with apt-get`);
    process.env.DEBIAN_FRONTEND = 'noninteractive';
    if ((await apt(['update', '-qq'])) !== 0) throw new SetupError('apt-get update failed; see the lines above');
    if ((await apt(['install', '-y', '-qq', '--no-install-recommends', ...pkgs])) !== 0) {
      throw new SetupError(`apt-get install ${pkgs.join(' ')} failed; see the lines above`);
    }
    const still = DEBIAN_TOOLS.filter((t) => !present(t));
    if (still.length > 0) throw new SetupError(`still missing after apt-get: ${still.map((t) => t.bin).join(', ')}`);
    return `installed ${pkgs.join(' ')}`;
  }
  const hint = `missing ${what}; install them with: sudo apt-get install ${pkgs.join(' ')}`;
  if (forTests) throw new SetupError(hint);
  console.log(`setup: warning: ${hint} (online-backup and qsd array tests and benchmarks need them)`);
  return 'missing (warned)';
}

async function main() {
  const started = Date.now();
  await step('npm dependencies', ensureDependencies);
  await step('Debian tools', ensureDebianTools);
  let temporal;
  await step('Temporal CLI', async () => {
    temporal = await ensureTemporal();
    return temporal.note;
  });
  const server = temporal.address
    ? `temporal server at ${temporal.address}`
    : `temporal ${temporal.version} at ${temporal.bin.startsWith(root + path.sep) ? path.relative(root, temporal.bin) : temporal.bin}`;
  console.log(`ready: node_modules ok, ${server} (${seconds(started)})`);
}

main().catch((error) => {
  console.error(`setup failed: ${error instanceof SetupError ? error.message : (error?.stack ?? error)}`);
  process.exit(1);
});
