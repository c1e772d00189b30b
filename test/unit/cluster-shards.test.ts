/**
 * How `npm run cluster` reads which history host owns a shard: field 3 of the server's persistence
 * ShardInfo, found among the fields before and after it in their protobuf encoding.
 */
import { describe, expect, it } from 'vitest';
import * as protobuf from 'protobufjs';
import { shardOwnerOf } from '../../scripts/cluster';

// The fields of temporal.server.api.persistence.v1.ShardInfo that precede and follow the owner, with
// every wire type a real row holds: varints, a string, and an embedded message (a Timestamp).
const root = protobuf.parse(`
  syntax = "proto3";
  message Timestamp { int64 seconds = 1; int32 nanos = 2; }
  message ShardInfo {
    int32 shard_id = 1;
    int64 range_id = 2;
    string owner = 3;
    int32 stolen_since_renew = 6;
    Timestamp update_time = 7;
  }
`).root;
const ShardInfo = root.lookupType('ShardInfo');

function encode(fields: Record<string, unknown>): Buffer {
  return Buffer.from(ShardInfo.encode(ShardInfo.create(fields)).finish());
}

describe('shardOwnerOf', () => {
  it('reads the owner between the range id and the later fields', () => {
    const owner = '127.0.0.1:22050-2-2abdac5c-a0c8-4e02-8e2e-015bdb2b8a58';
    const data = encode({
      shardId: 2,
      rangeId: 2 ** 40 + 7,
      owner,
      stolenSinceRenew: 3,
      updateTime: { seconds: 1_780_000_000, nanos: 5 },
    });
    expect(shardOwnerOf(data)).toBe(owner);
  });

  it('reads the owner when it is the last field', () => {
    expect(shardOwnerOf(encode({ shardId: 4, rangeId: 1, owner: '127.0.0.1:31563-4-x' }))).toBe('127.0.0.1:31563-4-x');
  });

  it('gives an empty owner for a shard no host has acquired yet', () => {
    expect(shardOwnerOf(encode({ shardId: 1, rangeId: 0 }))).toBe('');
  });
});
