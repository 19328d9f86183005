// Suites that must hold on both stores: run once on the embedded store and once on a
// real etcd started for the suite (and closed after it).
import { after, before, describe } from 'node:test';
import { startEtcd, type EtcdCluster } from './etcd.ts';

type StoreKind = 'memory' | 'etcd';

export interface SuiteStore {
  readonly kind: StoreKind;
  /** The suite's etcd, once its `before` hooks run; undefined on the memory store. */
  readonly etcd: EtcdCluster | undefined;
}

/** `describe(`${title} on the ${kind} store`)` for each store; the etcd starts before the suite's own hooks. */
export function eachStore(title: string, suite: (store: SuiteStore) => void): void {
  for (const kind of ['memory', 'etcd'] as const) {
    describe(`${title} on the ${kind} store`, () => {
      const store: { kind: StoreKind; etcd: EtcdCluster | undefined } = { kind, etcd: undefined };
      before(async () => {
        if (kind === 'etcd') store.etcd = await startEtcd();
      });
      after(async () => store.etcd?.close());
      suite(store);
    });
  }
}
