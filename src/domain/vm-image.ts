/**
 * A whole-VM image of seed 000 (docs/adr/037): the VM's definition kept with its two volumes, how
 * the image was made consistent (an engine snapshot taken while the guest was frozen, or the guest
 * frozen for the whole read), and the catalog's record that ties the three together.
 */
import { z } from 'zod';
import { InvalidInputError } from './errors';
import { DigestSchema } from './store';

/** How an image's two volumes were made to hold one instant. */
export const ImageConsistency = {
  /** The guest frozen for a moment, an engine snapshot of both volumes taken, the image read from them. */
  Snapshot: 'snapshot',
  /** The array could not hold snapshots: the guest frozen, within its bound, for the whole read. */
  Frozen: 'frozen',
} as const;
export type ImageConsistency = (typeof ImageConsistency)[keyof typeof ImageConsistency];
export const ImageConsistencySchema = z.enum(['snapshot', 'frozen']);

/** One volume of a VM's definition: its role, where it lies and how big it is. */
export const VmDefinitionVolumeSchema = z.object({
  role: z.enum(['software', 'data']),
  array: z.string().min(1),
  volume: z.string().min(1),
  sizeBytes: z.number().int().min(0),
});
export type VmDefinitionVolume = z.infer<typeof VmDefinitionVolumeSchema>;

/**
 * What a hypervisor needs to recreate a VM from its image, without kura.yaml: its name, host, size
 * and volumes (software and data, with their sizes), and how its health is asked. Kept in the store
 * beside the image's volumes (a one-chunk backup of target `<vm>/definition`).
 */
export const VmDefinitionSchema = z.object({
  kind: z.literal('kura-vm-definition'),
  version: z.literal(1),
  site: z.string().min(1),
  name: z.string().min(1),
  host: z.string().min(1),
  /** The hypervisor driver that described it (`lab`, `libvirt`). */
  driver: z.string().min(1),
  /** Virtual CPUs and memory, where the hypervisor has them (the lab's VMs have none). */
  vcpus: z.number().int().min(1).nullable(),
  memoryBytes: z.number().int().min(1).nullable(),
  volumes: z.array(VmDefinitionVolumeSchema).length(2),
  /** How the VM is asked whether it is healthy: its monitor's state (lab), or its guest agent (libvirt). */
  health: z.object({ check: z.enum(['monitor', 'agent', 'state']), bootMs: z.number().int().min(0).nullable() }),
  /** When the definition was read (ISO), i.e. while the guest was frozen for the image. */
  describedAt: z.string().min(1),
});
export type VmDefinition = z.infer<typeof VmDefinitionSchema>;

/** The volume of a definition that plays `role`. */
export function definitionVolume(def: VmDefinition, role: 'software' | 'data'): VmDefinitionVolume {
  const v = def.volumes.find((x) => x.role === role);
  if (!v)
    throw new InvalidInputError(`the definition of ${def.name} has no ${role} volume; the image is not a whole VM`);
  return v;
}

/** The catalog's row of a whole-VM image: its two volume backups, its definition and how it was made consistent. */
export const VmImageRecordSchema = z.object({
  site: z.string(),
  vm: z.string(),
  dataTime: z.string(),
  softwareBackupId: z.string(),
  dataBackupId: z.string(),
  /** The store backup holding the definition, and the SHA-256 of the definition's JSON. */
  definitionBackupId: z.string().nullable(),
  definitionSha256: DigestSchema.nullable(),
  consistency: ImageConsistencySchema,
  /** How long the guest was frozen. */
  frozenMs: z.number().int().min(0),
  recordedAt: z.string(),
});
export type VmImageRecord = z.infer<typeof VmImageRecordSchema>;

/** The snapshot name of a VM's image of one instant, within the rules of every array engine. */
export function imageSnapshotName(dataTime: string): string {
  return `kura-image-${dataTime.replace(/[^0-9A-Za-z]/g, '')}`;
}
