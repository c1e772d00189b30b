/**
 * Target classes of seed 000 (kura.yaml `classes`): each class of the estate with its method, its
 * schedule, its retention in the deduplicated store and its RPO — `vm` (every VM of every site, whole-VM
 * images), `server` (physical and file servers: a full, then only what changed), `client` (special
 * clients at medical devices: an OS image only inside the client's window, skipped when busy).
 */
import { z } from 'zod';
import { HHMM } from './ladder-config';
import { RetentionSchema } from './store';
import { ToTapePolicySchema } from './store-tape';
import { DurationSchema } from './units';

/**
 * A class's recovery point objective unless kura.yaml gives one: each class backs up once a day at
 * its scheduled time, so the newest good backup of a target may be at most a day old (plus an hour
 * for the run itself).
 */
export const DEFAULT_CLASS_RPO_MS = 25 * 3_600_000;

/** A volume `array/volume` of a site (the first site when `site` is omitted). */
const ClassTargetSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be a name of letters, digits, ".", "_" or "-"'),
  site: z.string().min(1).optional(),
  volume: z.string().regex(/^[^/]+\/[^/]+$/, 'must name a volume as array/volume, e.g. array-01/fs-01-data'),
});

/** A daily window of wall-clock time (UTC unless `timezone`); `to` before `from` runs past midnight. */
export const WindowSchema = z.object({ from: HHMM, to: HHMM });
export type Window = z.infer<typeof WindowSchema>;

const common = {
  /** Daily start time, HH:MM in `timezone` (a Temporal Schedule fires the class's backup then). */
  schedule: HHMM,
  timezone: z.string().min(1).default('UTC'),
  retention: RetentionSchema,
  /** How old a target's newest good backup may grow before the estate report names it a breach. */
  rpo: DurationSchema.refine((n) => n > 0, 'must be more than 0').default(DEFAULT_CLASS_RPO_MS),
  /** Long-term copies: the class's store backups copied to tape through the streams (docs/adr/042). */
  toTape: ToTapePolicySchema.optional(),
};

export const ClassesSchema = z.object({
  vm: z
    .object({
      /** Whole-VM image: the software and data volumes, taken at one instant, into the store. */
      method: z.literal('image').default('image'),
      ...common,
    })
    .optional(),
  server: z
    .object({
      /**
       * `incremental`: each backup reads what changed since the last one; `differential`: since the
       * last full. In the store both write only the chunks it lacks; they differ in what a dirty
       * bitmap is compared with.
       */
      method: z.enum(['incremental', 'differential']).default('incremental'),
      ...common,
      targets: z.array(ClassTargetSchema).default([]),
    })
    .optional(),
  client: z
    .object({
      method: z.literal('image').default('image'),
      ...common,
      /** Backups of a client are taken only inside this window; outside it, or while busy, they are skipped. */
      window: WindowSchema,
      targets: z.array(ClassTargetSchema).default([]),
    })
    .optional(),
});
export type Classes = z.infer<typeof ClassesSchema>;
export type ClassesInput = z.input<typeof ClassesSchema>;

export const ClassName = { Vm: 'vm', Server: 'server', Client: 'client' } as const;
export type ClassName = (typeof ClassName)[keyof typeof ClassName];
export const ClassNameSchema = z.enum(['vm', 'server', 'client']);

/** One volume a class protects: the catalog's target name, and where the volume lies. */
export interface ClassVolume {
  className: ClassName;
  /** The catalog's target: the VM's or target's name, with `/software` or `/data` for a VM's volumes. */
  target: string;
  site: string;
  array: string;
  volume: string;
}

/**
 * Whether `iso` falls inside the window, in the given time zone. Pure (Intl only), so a workflow
 * can decide it from its own clock.
 */
export function insideWindow(window: Window, iso: string, timezone = 'UTC'): boolean {
  const parts = new Intl.DateTimeFormat('en-GB', {
    timeZone: timezone,
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(new Date(iso));
  const hour = Number(parts.find((p) => p.type === 'hour')?.value);
  const minute = Number(parts.find((p) => p.type === 'minute')?.value);
  const now = hour * 60 + minute;
  const [fh, fm] = window.from.split(':').map(Number) as [number, number];
  const [th, tm] = window.to.split(':').map(Number) as [number, number];
  const from = fh * 60 + fm;
  const to = th * 60 + tm;
  return from <= to ? now >= from && now < to : now >= from || now < to;
}

/**
 * Every volume a class protects: for `vm`, each VM's software and data volume (targets
 * `<vm>/software`, `<vm>/data`); for `server` and `client`, each target's volume.
 */
export function classVolumes(
  cfg: {
    sites: { name: string; vms: { name: string; softwareVolume: string; dataVolume: string }[] }[];
    classes: Classes;
  },
  className: ClassName,
): ClassVolume[] {
  const split = (ref: string) => {
    const [array = '', volume = ''] = ref.split('/');
    return { array, volume };
  };
  if (className === ClassName.Vm) {
    if (!cfg.classes.vm) return [];
    return cfg.sites.flatMap((s) =>
      s.vms.flatMap((v) => [
        { className, target: `${v.name}/software`, site: s.name, ...split(v.softwareVolume) },
        { className, target: `${v.name}/data`, site: s.name, ...split(v.dataVolume) },
      ]),
    );
  }
  const cls = cfg.classes[className];
  return (cls?.targets ?? []).map((t) => ({
    className,
    target: t.name,
    site: t.site ?? cfg.sites[0]?.name ?? '',
    ...split(t.volume),
  }));
}
