/**
 * Recovery benchmark: for each cure depth, the time from a failure report to a healthy VM,
 * split into lab time (the lab VM restarting, the new data volume being built — the activities'
 * own time) and orchestration overhead (everything else: workflow tasks, timers, the server);
 * then a VM recreated from its two images (the S18 rebuild) against the five-step manual rebuild
 * of seed 000 with the step times of kura.yaml's `ladder.manualRebuild`.
 *
 *   npx tsx bench/ladder.ts [--size 8MiB] [--apl 200ms] [--mw 400ms] [--os 800ms] [--runs 1]
 */
import { hospitalPreset } from '../src/lab/preset';
import { LabState } from '../src/lab/state';
import { guardianQuery, guardianWorkflowId } from '../src/client';
import { parseDuration, parseSize } from '../src/domain/units';
import { CURE_DEPTHS, rungForDepth, type LadderResult, type LadderView } from '../src/domain/ladder';
import { arg, runBench, withLabStack } from './support/lab-stack';

/** Lab time of a ladder: what its actions and health waits took inside the activities. */
function labMs(view: LadderView): number {
  return view.rungs.flatMap((r) => r.attempts).reduce((n, a) => n + (a.actionMs ?? 0) + (a.healthWaitMs ?? 0), 0);
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  // The hand-over's notification is logged at WARN; the benchmark's table is what it prints.
  process.env.KURA_LOG_LEVEL ??= 'ERROR';
  const size = parseSize(arg('size', '8MiB')) ?? 8 * 1024 * 1024;
  const times = {
    aplRestart: parseDuration(arg('apl', '200ms'))!,
    mwRestart: parseDuration(arg('mw', '400ms'))!,
    osReboot: parseDuration(arg('os', '800ms'))!,
  };
  const runs = Number(arg('runs', '1'));
  const depths = CURE_DEPTHS.filter((d) => d !== 'none');
  const vmCount = (depths.length + 1) * runs;
  const cfg = hospitalPreset({
    vms: vmCount,
    hosts: 2,
    dataVolumeSize: size,
    softwareVolumeSize: size / 2,
    site: 'bench',
  });
  cfg.tuning = { copyHeartbeatTimeout: '30s' };
  Object.assign(cfg, {
    // A health wait a little longer than the slowest restart: a rung that does not cure costs its whole wait.
    ladder: {
      attempts: 1,
      healthWait: `${times.osReboot + 500}ms`,
      healthCheckEvery: '20ms',
      backoff: '0ms',
      stabilityWindow: '0ms',
      healthPoll: '0ms',
      guardVms: true,
    },
    lab: times,
  });
  let names: string[] = [];
  await withLabStack(
    'ladder',
    cfg,
    async ({ loaded, paths, client, kura }) => {
      const { vms } = kura;
      names = loaded.config.sites[0]!.vms.map((v) => v.name);
      const state = new LabState(paths.labState);

      /** Reports a failure and waits for the ladder it starts to end; returns the wall time and the result. */
      const recover = async (
        vm: string,
        reason: string,
        until?: (id: string) => Promise<void>,
      ): Promise<{ ms: number; result: LadderResult }> => {
        const g0 = await client.workflow.getHandle(guardianWorkflowId(vm)).query(guardianQuery);
        const t0 = performance.now();
        await vms.reportFailure(vm, reason);
        let id: string | null = null;
        while (!id) {
          const g = await client.workflow.getHandle(guardianWorkflowId(vm)).query(guardianQuery);
          if (g.state.incidents > g0.state.incidents) id = g.currentLadder ?? g.state.lastLadder ?? null;
          else await new Promise((r) => setTimeout(r, 10));
        }
        for (;;) {
          try {
            await client.workflow.getHandle(id).describe();
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 10));
          }
        }
        if (until) await until(id);
        const result = (await client.workflow.getHandle(id).result()) as LadderResult;
        return { ms: performance.now() - t0, result };
      };

      // Each VM gets a data image first, so the data-swap rung has something to swap in.
      for (const vm of names) await vms.backupData(vm);

      const rows: { depth: string; rung: string; total: number; lab: number; rungs: number }[] = [];
      for (let run = 0; run < runs; run++) {
        for (const [i, depth] of depths.entries()) {
          const vm = names[run * (depths.length + 1) + i]!;
          state.setVmFault('bench', vm, depth);
          const { ms, result } = await recover(vm, `bench ${depth}`);
          if (result.rung !== rungForDepth(depth)) throw new Error(`${depth} recovered at ${result.rung}`);
          rows.push({
            depth,
            rung: result.rung,
            total: ms,
            lab: labMs(result.view),
            rungs: result.view.rungs.filter((r) => r.attempts.length > 0).length,
          });
        }
      }

      console.log(
        `ladder benchmark: lab restarts apl ${times.aplRestart} ms, mw ${times.mwRestart} ms, os ${times.osReboot} ms; data volume ${size} bytes; ${runs} run(s); dev server (SQLite) on 127.0.0.1`,
      );
      console.log('');
      console.log('  cure depth  cured at         rungs  time to recovery  lab time   orchestration  overhead/rung');
      for (const r of rows) {
        const over = r.total - r.lab;
        console.log(
          `  ${r.depth.padEnd(10)}  ${r.rung.padEnd(15)}  ${String(r.rungs).padStart(5)}  ${fmt(r.total).padStart(16)}  ${fmt(r.lab).padStart(8)}  ${fmt(over).padStart(13)}  ${fmt(over / r.rungs).padStart(13)}`,
        );
      }

      // A VM recreated from its two images (S18) vs the five manual steps of seed 000.
      const rebuildVm = names[depths.length]!;
      state.setVmFault('bench', rebuildVm, 'none');
      let rebuildMs = 0;
      const { result } = await recover(rebuildVm, 'bench incurable', async () => {
        for (;;) {
          const v = await vms.ladder(rebuildVm).catch(() => undefined);
          if (v?.status === 'waiting-for-human') break;
          await new Promise((r) => setTimeout(r, 10));
        }
        const t0 = performance.now();
        const view = await vms.rebuild(rebuildVm, 'host-01');
        rebuildMs = performance.now() - t0;
        if (view.status !== 'rebuilt') throw new Error(`rebuild ended ${view.status}`);
      });
      const steps = loaded.config.ladder.manualRebuild;
      const manualMs = steps.installOs + steps.installDb + steps.restoreDb + steps.installPrograms + steps.configure;
      console.log('');
      console.log('  restore of a VM                              time');
      console.log(
        `  from its software + data images (measured)   ${fmt(rebuildMs).padStart(10)}   (${result.outcome}, volumes of ${size + size / 2} bytes, incl. health check)`,
      );
      console.log(
        `  seed 000 five-step rebuild (kura.yaml)       ${fmt(manualMs).padStart(10)}   (install OS ${steps.installOs / 60_000} m, DB software ${steps.installDb / 60_000} m, restore DB ${steps.restoreDb / 60_000} m, programs ${steps.installPrograms / 60_000} m, configure ${steps.configure / 60_000} m)`,
      );
      console.log(`  ratio five-step / image restore              ${(manualMs / rebuildMs).toFixed(0)}×`);

      state.close();
    },
    // The guardians run forever: end them once no worker is left to complete their tasks.
    async (client) => {
      for (const vm of names)
        await client.workflow
          .getHandle(guardianWorkflowId(vm))
          .terminate('benchmark done')
          .catch(() => undefined);
    },
  );
}

runBench(main);
