/**
 * Recovery benchmark: for each cure depth, the time from a failure report to a healthy VM,
 * split into lab time (the lab VM restarting, the new data volume being built — the activities'
 * own time) and orchestration overhead (everything else: workflow tasks, timers, the server);
 * then a VM recreated from its two images (the S18 rebuild) against the five-step manual rebuild
 * of seed 000 with the step times of kura.yaml's `ladder.manualRebuild`; then early escalation:
 * an OS-curable fault under kura.yaml's default ladder and lab times (scaled by `--scale`), before
 * (`failedChecks: 0`, every lower rung waits its whole healthWait) and after (the default
 * `failedChecks`: a rung gives up once its VM fails that many checks in a row).
 *
 *   npx tsx bench/ladder.ts [--size 8MiB] [--apl 200ms] [--mw 400ms] [--os 800ms] [--runs 1]
 *                           [--scale 0.1] [--part all|rungs|escalation]
 */
import { hospitalPreset } from '../src/lab/preset';
import { LabState } from '../src/lab/state';
import { guardianQuery, guardianWorkflowId, ladderWorkflowId } from '../src/client';
import { parseDuration, parseSize } from '../src/domain/units';
import {
  CURE_DEPTHS,
  ladderPolicy,
  rungForDepth,
  type LadderInput,
  type LadderResult,
  type LadderView,
} from '../src/domain/ladder';
import { LabTimingSchema, LadderConfigSchema } from '../src/domain/ladder-config';
import { arg, runBench, withLabStack } from './support/lab-stack';
import { printVerdict } from './support/verdict';

/** Lab time of a ladder: what its actions and health waits took inside the activities. */
function labMs(view: LadderView): number {
  return view.rungs.flatMap((r) => r.attempts).reduce((n, a) => n + (a.actionMs ?? 0) + (a.healthWaitMs ?? 0), 0);
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  // The hand-over's notification is logged at WARN; the benchmark's table is what it prints.
  process.env.KURA_LOG_LEVEL ??= 'ERROR';
  const part = arg('part', 'all');
  if (part === 'all' || part === 'rungs') await rungs();
  if (part === 'all') console.log('');
  if (part === 'all' || part === 'escalation') await escalation();
}

/** Time to recovery per cure depth, and the image rebuild against the five manual steps. */
async function rungs(): Promise<void> {
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

/**
 * Early escalation, before and after, on an OS-curable fault: kura.yaml's default ladder and lab
 * restart times, all scaled by `--scale`, so "before" is what a new user got — every lower rung
 * waiting out its whole healthWait on a VM already known to be failing.
 */
async function escalation(): Promise<void> {
  const scale = Number(arg('scale', '0.1'));
  if (!(scale > 0)) throw new Error(`--scale must be a number above 0, not ${arg('scale', '')}`);
  const defaults = LadderConfigSchema.parse({});
  const labDefaults = LabTimingSchema.parse({});
  const ms = (n: number) => Math.max(1, Math.round(n * scale));
  const lab = {
    aplRestart: ms(labDefaults.aplRestart),
    mwRestart: ms(labDefaults.mwRestart),
    osReboot: ms(labDefaults.osReboot),
  };
  const ladder = {
    healthWait: ms(defaults.healthWait),
    healthCheckEvery: ms(defaults.healthCheckEvery),
    backoff: ms(defaults.backoff),
    stabilityWindow: '0ms',
    healthPoll: '0ms',
    guardVms: false,
  };
  const cfg = hospitalPreset({
    vms: 2,
    hosts: 2,
    dataVolumeSize: 1024 * 1024,
    softwareVolumeSize: 512 * 1024,
    site: 'bench',
  });
  cfg.tuning = { copyHeartbeatTimeout: '30s' };
  Object.assign(cfg, { ladder, lab });

  const rows: { label: string; toOs: number; total: number; checks: number; view: LadderView }[] = [];
  await withLabStack('escalation', cfg, async ({ loaded, paths, client, kura }) => {
    const state = new LabState(paths.labState);
    const site = loaded.config.sites[0]!;
    const runs = [
      { label: 'before (failedChecks 0)', failedChecks: 0 },
      { label: `after (failedChecks ${defaults.failedChecks})`, failedChecks: defaults.failedChecks },
    ];
    for (const [i, run] of runs.entries()) {
      const vm = site.vms[i]!.name;
      const base = ladderPolicy({ ...loaded.config.ladder, failedChecks: run.failedChecks });
      state.setVmFault('bench', vm, 'os');
      const input: LadderInput = {
        site: site.name,
        vm,
        incident: `escalation-${i}`,
        reason: 'bench: a fault the OS reboot cures',
        hosts: site.hosts.map((h) => h.name),
        policy: base,
      };
      const t0 = performance.now();
      const result = (await client.workflow.execute('recoveryLadder', {
        taskQueue: kura.taskQueue,
        workflowId: ladderWorkflowId(vm, input.incident),
        args: [input],
      })) as LadderResult;
      const wall = performance.now() - t0;
      if (result.rung !== 'os-reboot') throw new Error(`${run.label}: recovered at ${result.rung}, not os-reboot`);
      const v = result.view;
      const os = v.rungs.find((r) => r.rung === 'os-reboot')!.attempts[0]!;
      const below = v.rungs
        .filter((r) => r.rung === 'apl-restart' || r.rung === 'mw-restart')
        .flatMap((r) => r.attempts);
      rows.push({
        label: run.label,
        toOs: Date.parse(os.startedAt) - Date.parse(v.startedAt),
        total: wall,
        checks: below.reduce((n, a) => n + (a.checks ?? 0), 0),
        view: v,
      });
    }
    state.close();
  });

  const [before, after] = rows as [(typeof rows)[0], (typeof rows)[0]];
  const target = ladder.healthWait / 2;
  console.log(
    `early escalation: an OS-curable fault with kura.yaml's default ladder and lab times × ${scale} (healthWait ${fmt(ladder.healthWait)}, a check every ${fmt(ladder.healthCheckEvery)}; lab restarts apl ${fmt(lab.aplRestart)}, mw ${fmt(lab.mwRestart)}, os ${fmt(lab.osReboot)})`,
  );
  console.log('');
  console.log('                              OS reboot reached   recovered   health checks of the rungs below');
  for (const r of rows) {
    console.log(
      `  ${r.label.padEnd(26)}  ${fmt(r.toOs).padStart(17)}  ${fmt(r.total).padStart(10)}  ${String(r.checks).padStart(32)}`,
    );
  }
  console.log(
    `  ratio before / after        ${`${(before.toOs / after.toOs).toFixed(1)}×`.padStart(17)}  ${`${(before.total / after.total).toFixed(1)}×`.padStart(10)}`,
  );
  console.log(
    `  target: the OS reboot reached in well under one rung's whole healthWait (< ${fmt(target)}, half of it): ${after.toOs < target ? 'met' : 'NOT met'} (${fmt(after.toOs)})`,
  );
  printVerdict({
    bench: 'ladder',
    metric: 'early escalation: OS reboot reached ÷ healthWait',
    now: after.toOs / ladder.healthWait,
    target: 0.5,
    direction: 'atMost',
    note: `before ${(before.toOs / ladder.healthWait).toFixed(2)}; ladder and lab times × ${scale}`,
  });
  for (const r of [before, after]) {
    const ends = r.view.rungs
      .filter((x) => x.rung === 'apl-restart' || x.rung === 'mw-restart')
      .map((x) => `${x.rung} ${x.attempts[0]?.healthEnd ?? '?'} after ${x.attempts[0]?.checks ?? '?'} checks`);
    console.log(`  ${r.label}: ${ends.join(', ')}`);
  }
}

runBench(main);
