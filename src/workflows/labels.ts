/**
 * The values a workflow gives the search attributes that name things (KuraTarget, KuraSite,
 * KuraVm): the name itself, or its keyed hash when the run's memo carries the hash key (kura.yaml's
 * `security.hashSearchAttributes`). The memo is passed on to children, so they hash alike.
 */
import { workflowInfo } from '@temporalio/workflow';
import { hashLabel } from '../domain/label-hash';
import { LABEL_KEY_MEMO } from '../search-attributes';

function labelKey(): string | undefined {
  const key = workflowInfo().memo?.[LABEL_KEY_MEMO];
  return typeof key === 'string' && /^[0-9a-f]{64}$/.test(key) ? key : undefined;
}

/** The search attribute value of a name for this run. */
export function label(name: string): string {
  const key = labelKey();
  return key === undefined ? name : hashLabel(key, name);
}

/** The memo a child run needs to label as this run does (empty when names stay names). */
export function labelMemo(): Record<string, string> {
  const key = labelKey();
  return key === undefined ? {} : { [LABEL_KEY_MEMO]: key };
}
