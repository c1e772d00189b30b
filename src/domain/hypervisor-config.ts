/**
 * The `hypervisor` section of kura.yaml: which hypervisor driver the workers use for the VMs —
 * the embedded lab (default) or libvirt on real hosts — and how the libvirt driver reaches them.
 */
import { z } from 'zod';

export const LibvirtConfigSchema = z.object({
  driver: z.literal('libvirt'),
  /** Connection URI of the VMs' hosts, e.g. qemu:///system or qemu+ssh://host-01/system. */
  uri: z.string().min(1),
  /** URI of a substitute host for a rebuild; `{host}` is replaced by the host's name. */
  hostUri: z
    .string()
    .includes('{host}', { message: 'must contain {host}, e.g. qemu+ssh://{host}/system' })
    .default('qemu+ssh://{host}/system'),
  softwareTarget: z.string().min(1).default('vda'),
  dataTarget: z.string().min(1).default('vdb'),
  /** systemd units the guest agent restarts for the APL and MW ranges. */
  units: z
    .object({ apl: z.string().min(1), mw: z.string().min(1) })
    .default({ apl: 'kura-apl.service', mw: 'kura-mw.service' }),
  /** `agent`: running and the guest agent answers; `state`: running is enough. */
  healthCheck: z.enum(['agent', 'state']).default('agent'),
  /** New volumes and the request journal; relative to Kura's home. */
  stateDir: z.string().min(1).default('libvirt'),
  /** Each VM's base images (`<vm>-software.img`, `<vm>-guarantee.img`); relative to Kura's home. */
  baseImageDir: z.string().min(1).default('base-images'),
});
export type LibvirtConfig = z.infer<typeof LibvirtConfigSchema>;

export const HypervisorConfigSchema = z.discriminatedUnion('driver', [
  z.object({ driver: z.literal('lab') }),
  LibvirtConfigSchema,
]);
export type HypervisorConfig = z.infer<typeof HypervisorConfigSchema>;
