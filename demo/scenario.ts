/**
 * The shape of one `make demo` scenario: it runs real role code against the emulators with fast
 * timings, narrates a timeline, and reports what it expected and what it saw.
 * @module
 */

export interface Narrator {
  /** One timeline line, stamped with the seconds since the scenario started. */
  say(text: string): void;
}

export interface ScenarioOutcome {
  readonly expected: string;
  readonly observed: string;
  readonly ok: boolean;
}

export interface Scenario {
  /** Short title for the summary table. */
  readonly title: string;
  /** One or two sentences a newcomer reads before the timeline. */
  readonly intro: string;
  run(narrator: Narrator): Promise<ScenarioOutcome>;
}
