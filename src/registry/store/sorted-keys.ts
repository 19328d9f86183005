// The embedded store's keys in etcd's order (UTF-8 bytes), in sorted chunks so
// that an insert or a delete moves at most one chunk, and a prefix is a range.

/** Binary search: the first index i >= lo of `arr` where `before(arr[i])` is false. */
export function search<T>(arr: T[], before: (x: T) => boolean, lo = 0): number {
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(arr[mid]!)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * a < b in UTF-8 byte order, as etcd orders keys. UTF-16 code-unit order agrees
 * except where a surrogate (a character above U+FFFF) meets U+E000–U+FFFF.
 */
export function keyLess(a: string, b: string): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rank(x) < rank(y);
  }
  return a.length < b.length;
}
const rank = (c: number) => (c >= 0xd800 && c <= 0xdfff ? c + 0x2000 : c >= 0xe000 ? c - 0x800 : c);

const lowerBound = (keys: string[], key: string): number => search(keys, (k) => keyLess(k, key));

const CHUNK = 512;

/**
 * Keys in code-unit order, as a list of sorted chunks of at most 2*CHUNK keys:
 * an insert or delete moves O(CHUNK + chunks) pointers instead of O(n), which
 * matters at 100k keys, and range() never sorts.
 */
export class SortedKeys {
  private chunks: string[][] = [];

  /** The last chunk whose first key is <= key (0 when none is). */
  private chunkFor(key: string): number {
    return Math.max(0, search(this.chunks, (c) => c[0]! <= key) - 1);
  }

  insert(key: string): void {
    if (this.chunks.length === 0) {
      this.chunks.push([key]);
      return;
    }
    const ci = this.chunkFor(key);
    const c = this.chunks[ci]!;
    c.splice(lowerBound(c, key), 0, key);
    if (c.length > 2 * CHUNK) this.chunks.splice(ci + 1, 0, c.splice(CHUNK));
  }

  delete(key: string): void {
    if (this.chunks.length === 0) return;
    const ci = this.chunkFor(key);
    const c = this.chunks[ci]!;
    const i = lowerBound(c, key);
    if (c[i] === key) c.splice(i, 1);
    if (c.length === 0) this.chunks.splice(ci, 1);
  }

  /** Calls fn for every key starting with prefix, in order. */
  forPrefix(prefix: string, fn: (key: string) => void): void {
    const chunks = this.chunks;
    if (chunks.length === 0) return;
    let ci = this.chunkFor(prefix);
    for (let i = lowerBound(chunks[ci]!, prefix); ci < chunks.length; ci++, i = 0) {
      const c = chunks[ci]!;
      for (; i < c.length; i++) {
        if (!c[i]!.startsWith(prefix)) return;
        fn(c[i]!);
      }
    }
  }
}
