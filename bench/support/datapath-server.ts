/**
 * Runs the datapath for one file as its own process (so it does not share an event loop with the
 * benchmark's client): NBD and control API on free ports, printed as one JSON line when ready.
 *
 *   tsx bench/support/datapath-server.ts <file> <state-dir> [copyRate] [journalSync]
 */
import * as path from 'node:path';
import { ControlServer } from '../../src/datapath/control';
import { writeControlToken } from '../../src/datapath/token';
import { NbdServer } from '../../src/datapath/nbd-server';
import { Volume } from '../../src/datapath/volume';
import { DatapathConfigSchema } from '../../src/domain/inventory';
import { parseWith } from '../../src/domain/validate';

async function main(): Promise<void> {
  const [file, stateDir, copyRate, journalSync] = process.argv.slice(2);
  if (!file || !stateDir) throw new Error('usage: datapath-server.ts <file> <state-dir> [copyRate] [journalSync]');
  const settings = parseWith(
    DatapathConfigSchema,
    { copyRate: copyRate ?? 0, ...(journalSync ? { journalSync } : {}) },
    'the bench datapath settings',
  );
  const volume = await Volume.open({ name: 'bench/vol', mainFile: file, stateDir, settings });
  const exports = new Map([['bench/vol', volume]]);
  const nbd = new NbdServer({ exports });
  const tokenFile = path.join(stateDir, 'control.token');
  const control = new ControlServer(exports, { token: writeControlToken(tokenFile), tokenFile });
  const nbdPort = await nbd.listen(0);
  const controlPort = await control.listen(0);
  process.stdout.write(`${JSON.stringify({ ready: true, nbdPort, controlPort, tokenFile })}\n`);
  process.once('SIGTERM', () => {
    void (async () => {
      await control.close();
      await nbd.close();
      await volume.close();
      process.exit(0);
    })();
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
