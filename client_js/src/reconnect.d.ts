export interface BackoffOptions {
  initialDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  /** Fraction of the delay that is randomized (0 = none). */
  jitter?: number;
  /** Least delay after close code 1013 (server overloaded). */
  overloadedDelayMs?: number;
}

export function isRetryableClose(code: number): boolean;
export function backoffDelay(attempt: number, options?: BackoffOptions, code?: number, random?: () => number): number;

export interface ReplayEntry {
  bytes?: Uint8Array;
  finalize?: true;
}

/** Audio not yet covered by a delivered final, kept to replay on a new session (bounded). */
export class AudioLedger {
  constructor(options: { sampleRate: number; bytesPerSample: number; maxReplaySeconds?: number });
  readonly sampleRate: number;
  readonly totalSamples: number;
  readonly coveredSample: number;
  readonly replayFrom: number;
  readonly heldSamples: number;
  append(bytes: Uint8Array, sentAt?: number): { start: number; end: number };
  markFinalize(): void;
  acknowledge(sample: number): void;
  replayEntries(): ReplayEntry[];
  takeGap(): { from: number; to: number } | null;
  sentAt(sample: number): number | undefined;
}

/** Client-side final index, monotonic across sessions. */
export class FinalSequencer {
  readonly nextIndex: number;
  readonly offsetSamples: number;
  startSession(offsetSamples: number): void;
  indexOf(utterance: number): number;
  acceptFinal(utterance: number): boolean;
}
