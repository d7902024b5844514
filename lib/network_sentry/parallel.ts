/**
 * Bounded parallelism for Docker calls: observing and acting both fan out over containers, and a busy
 * daemon must not get all of them at once.
 * @module
 */

/** Concurrent Docker calls: enough for 50 containers in well under a second, gentle on a busy daemon. */
export const DOCKER_PARALLELISM = 8;

/** Maps with at most `limit` calls in flight; results keep the input order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
