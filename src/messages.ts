/**
 * Every signal, query and update of Kura's workflows, declared once with stable kebab-case wire
 * names. Workflows and the client both import these, so they cannot drift apart.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Grant, MarkRequest, PoolTables, ReleaseRequest, ReserveRequest } from './domain/pool';
import type { PlanView, Progress } from './domain/jobs';
import type { FleetProgress } from './domain/fleet';
import type { OnlineProgress } from './domain/datapath';

/** Resource pool: grant N disjoint streams to a job, all or nothing. */
export const reserveStreamsUpdate = defineUpdate<Grant, [ReserveRequest]>('reserve-streams');
/** Resource pool: free everything a job holds; idempotent. */
export const releaseUpdate = defineUpdate<{ released: number }, [ReleaseRequest]>('release');
/** Resource pool: an operator or a fault marks a device (un)available. */
export const markDeviceSignal = defineSignal<[MarkRequest]>('mark-device');
/** Resource pool: the inventory changed; add new devices, drop removed free ones. */
export const syncInventorySignal = defineSignal<[PoolTables]>('sync-inventory');
/** Resource pool: the tables, as seed 004 Figs. 3–6 show them. */
export const tablesQuery = defineQuery<PoolTables>('tables');

/** Any job: where it is, for the CLI's progress bar and the UI. */
export const progressQuery = defineQuery<Progress>('progress');
/** SAN operation: the plan of step 3 and each step's state. */
export const planQuery = defineQuery<PlanView>('plan');

/** Fleet run: per-target states. */
export const fleetProgressQuery = defineQuery<FleetProgress>('fleet-progress');

/**
 * Online backup: phase, ETA and convergence path. The same wire name as `progressQuery`, so every
 * tool that asks a job for its `progress` gets an answer; this constant types the online shape.
 */
export const onlineProgressQuery = defineQuery<OnlineProgress>('progress');
