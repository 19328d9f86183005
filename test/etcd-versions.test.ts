// etcd releases with a known lease revocation bug (etcd-io/etcd#15247) are named, later ones are not.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { knownLeaseBug } from '../src/registry/store/etcd-versions.ts';

describe('etcd versions with known lease revocations', () => {
  it('names every release before the fix of etcd-io/etcd#15247 and none after it', () => {
    for (const v of ['3.4.23', '3.4.30', '3.5.0', '3.5.12', '3.3.27', '2.3.8']) assert.match(knownLeaseBug(v) ?? '', /15247/, v);
    for (const v of ['3.4.31', '3.4.41', '3.5.13', '3.5.21', '3.6.0', '3.6.5-rc.0', 'not a version'])
      assert.equal(knownLeaseBug(v), undefined, v);
  });
});
