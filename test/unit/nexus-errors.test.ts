/** Kura's refusals as the Nexus failures a caller of the `kura` service gets, each keeping its type. */
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import * as nexus from 'nexus-rpc';
import { KuraError, ErrorType, InvalidInputError, NotFoundError } from '../../src/domain/errors';
import { asNexusError } from '../../src/nexus-handler';

describe('Nexus failures of the kura service', () => {
  it('answers an input its schema rejects with a BAD_REQUEST that is never retried, carrying InvalidInput', () => {
    const err = asNexusError(new InvalidInputError('invalid backup request: target: Too small', []));
    expect(err).toBeInstanceOf(nexus.HandlerError);
    const h = err as nexus.HandlerError;
    expect([h.type, h.retryable, h.message]).toEqual([
      'BAD_REQUEST',
      false,
      'invalid backup request: target: Too small',
    ]);
    expect(h.cause).toBeInstanceOf(ApplicationFailure);
    expect(h.cause).toMatchObject({ type: ErrorType.InvalidInput, nonRetryable: true });
  });

  it('fails the operation on a refusal no retry can cure, keeping its type and details', () => {
    const err = asNexusError(new NotFoundError('unknown target "vm-999"', { target: 'vm-999' }));
    expect(err).toBeInstanceOf(nexus.OperationError);
    const o = err as nexus.OperationError;
    expect([o.state, o.message]).toEqual(['failed', 'unknown target "vm-999"']);
    expect(o.cause).toMatchObject({ type: ErrorType.NotFound, nonRetryable: true });
    expect((o.cause as ApplicationFailure).details?.[0]).toMatchObject({ target: 'vm-999' });
  });

  it('lets the caller retry a service that does not answer', () => {
    const err = asNexusError(new KuraError(ErrorType.Unavailable, 'the resource pool of site s did not answer'));
    expect(err).toBeInstanceOf(nexus.HandlerError);
    expect([(err as nexus.HandlerError).type, (err as nexus.HandlerError).retryable]).toEqual(['UNAVAILABLE', true]);
    expect((err as nexus.HandlerError).cause).toMatchObject({ type: ErrorType.Unavailable, nonRetryable: false });
  });

  it('leaves any other error to the SDK', () => {
    const plain = new Error('socket closed');
    expect(asNexusError(plain)).toBe(plain);
  });
});
