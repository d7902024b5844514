/**
 * Fault injection shared by every emulator: added latency, a share of throttled calls, and scripted
 * failures for the next N calls (5xx, throttling, connection reset, a hang after accept, or a trickle).
 * @module
 */

/**
 * `trickle`: the real answer's status and headers at once, then its body one byte per
 * {@link Faults.trickleIntervalMs}, as a congested or half-broken path does. A client whose timeout only
 * covers the wait for the headers, or the idle time between bytes (the AWS SDK's `requestTimeout` is a
 * socket inactivity timeout: smithy-lang/smithy-typescript packages/node-http-handler
 * set-socket-timeout.ts), is held for as many seconds as the body has bytes.
 *
 * `garbled`: status 200 and the first half of the real body, as from an agent cut off mid-answer.
 */
export type FaultKind = "server-error" | "throttle" | "reset" | "hang" | "trickle" | "garbled";

export class Faults {
  /** Delay added before every answer, in milliseconds. */
  latencyMs = 0;
  /** Probability in [0, 1] that a call is throttled. */
  throttleRate = 0;
  /** A trickled body sends one byte per this many milliseconds. */
  trickleIntervalMs = 1_000;
  readonly #queue: FaultKind[] = [];
  readonly #random: () => number;

  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  /** The next `count` calls fail with `kind`, before any random throttling. */
  failNext(count: number, kind: FaultKind): this {
    for (let i = 0; i < count; i++) this.#queue.push(kind);
    return this;
  }

  /** The very next call fails with `kind`, ahead of anything already scripted. */
  failImmediately(kind: FaultKind): this {
    this.#queue.unshift(kind);
    return this;
  }

  /** Clears every fault. */
  clear(): this {
    this.latencyMs = 0;
    this.throttleRate = 0;
    this.#queue.length = 0;
    return this;
  }

  /** Decides the fate of one call; `undefined` means answer normally. */
  next(): FaultKind | undefined {
    const scripted = this.#queue.shift();
    if (scripted) return scripted;
    if (this.throttleRate > 0 && this.#random() < this.throttleRate) return "throttle";
    return undefined;
  }
}

/** A seeded generator (mulberry32) so fault patterns in tests and benchmarks are repeatable. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
