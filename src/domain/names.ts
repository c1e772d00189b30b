/**
 * The one rule for the names of Kura's things (sites, devices, VMs, jobs), in a module of its own
 * so that workflow code can check a name without evaluating the whole configuration schema: a
 * worker evaluates every module of the workflow bundle again for each workflow it starts, and
 * kura.yaml's schema was about a fifth of a backup's CPU on the workflow thread (docs/adr/045).
 */
import { z } from 'zod';

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const NameSchema = z
  .string()
  .regex(NAME_PATTERN, 'must start with a letter or digit and hold only letters, digits, ".", "_" or "-" (at most 63)');
