// Bookkeeping that makes reconnection safe: which closes to retry and when,
// the audio not yet covered by a delivered final (to replay on a new session),
// and the client-side final index that keeps counting across sessions.
//
// Clocks: the "stream clock" counts samples the application passed to
// sendAudio since the client was created; each server session has its own
// audio clock that starts at 0 with the first sample it receives. A session
// that starts by replaying from stream sample A has session time t at stream
// time A / sampleRate + t.

/** Close codes after which reconnecting can help (PROTOCOL.md "Close codes"). */
const RETRYABLE = new Set([
  1001, // server shutting down (finals were flushed; another instance may take over)
  1005, // closed without a status
  1006, // connection lost
  1011, // internal error
  1012, // service restart
  1013, // overloaded, try again later
  1014, // bad gateway
]);

/**
 * @typedef {object} BackoffOptions
 * @property {number} [initialDelayMs] First delay (default 250).
 * @property {number} [maxDelayMs] Longest delay (default 10000).
 * @property {number} [factor] Growth per attempt (default 2).
 * @property {number} [jitter] Fraction of the delay that is randomized (0 = none; default 0.5).
 * @property {number} [overloadedDelayMs] Least delay after close code 1013 (server overloaded; default 1000).
 */
/**
 * One thing to send a new session: audio bytes, or a finalize mark.
 * @typedef {{ bytes: Uint8Array, finalize?: undefined } | { finalize: true, bytes?: undefined }} ReplayEntry
 */

/**
 * @param {number} code a WebSocket close code
 * @returns {boolean}
 */
export function isRetryableClose(code) {
  return RETRYABLE.has(code);
}

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped, with
 * jitter so that many clients dropped at once do not return at once. An
 * overloaded server (1013) gets at least `overloadedDelayMs`.
 * @param {number} attempt
 * @param {BackoffOptions} [options]
 * @param {number} [code] the close code that ended the last session
 * @param {() => number} [random] uniform in [0, 1)
 * @returns {number}
 */
export function backoffDelay(attempt, options = {}, code = undefined, random = Math.random) {
  const { initialDelayMs = 250, maxDelayMs = 10000, factor = 2, jitter = 0.5, overloadedDelayMs = 1000 } = options;
  const raw = Math.min(maxDelayMs, initialDelayMs * factor ** attempt);
  const delay = Math.round(raw * (1 - jitter + jitter * random()));
  return code === 1013 ? Math.max(overloadedDelayMs, delay) : delay;
}

/**
 * The audio (and finalize marks) sent since the end of the last delivered
 * final, in stream order, so that a new session can be fed exactly what the
 * old one had not yet turned into finals. Also maps stream samples to the wall
 * time they were sent (for latency). Holds at most `maxReplaySeconds` of audio;
 * beyond that the oldest is dropped, and `takeGap` reports what a replay missed.
 */
export class AudioLedger {
  /** @param {{ sampleRate: number, bytesPerSample: number, maxReplaySeconds?: number }} options */
  constructor({ sampleRate, bytesPerSample, maxReplaySeconds = 60 }) {
    /** @readonly */
    this.sampleRate = sampleRate;
    /** @readonly */
    this.bytesPerSample = bytesPerSample;
    /** @readonly */
    this.maxSamples = Math.max(1, Math.round(maxReplaySeconds * sampleRate));
    /** Stream samples appended so far. @readonly */
    this.totalSamples = 0;
    /** The stream before this sample is covered by delivered finals. @readonly */
    this.coveredSample = 0;
    /** First sample still held (>= coveredSample; more once the bound cut in). @readonly */
    this.replayFrom = 0;
    /** @private @type {{ start: number, bytes: Uint8Array, sentAt: number }[]} contiguous from replayFrom to totalSamples */
    this._chunks = [];
    /** @private @type {number[]} stream positions of finalize requests, ascending */
    this._marks = [];
  }

  /**
   * Record encoded audio; returns its stream sample range.
   * @param {Uint8Array} bytes
   * @param {number} [sentAt] wall-clock ms
   * @returns {{ start: number, end: number }}
   */
  append(bytes, sentAt = Date.now()) {
    const start = this.totalSamples;
    this._chunks.push({ start, bytes, sentAt });
    this.totalSamples += bytes.length / this.bytesPerSample;
    const first = this.totalSamples - this.maxSamples;
    if (first > this.replayFrom) this._dropBefore(first);
    return { start, end: this.totalSamples };
  }

  /**
   * Record a finalize request at the current stream position, to repeat it on replay.
   * @returns {void}
   */
  markFinalize() {
    this._marks.push(this.totalSamples);
  }

  /**
   * A final covers the stream up to `sample`: that audio is never needed again.
   * @param {number} sample
   * @returns {void}
   */
  acknowledge(sample) {
    const to = Math.min(Math.round(sample), this.totalSamples);
    if (to > this.coveredSample) this.coveredSample = to;
    if (to > this.replayFrom) this._dropBefore(to);
  }

  // Forget audio before stream sample `to`, cutting a chunk if needed. A finalize
  // mark at or before `to` is dropped too: at the start of a replay it is a no-op.
  /**
   * @private
   * @param {number} to
   */
  _dropBefore(to) {
    this.replayFrom = to;
    const c = this._chunks;
    let k = 0;
    while (k < c.length && c[k].start + c[k].bytes.length / this.bytesPerSample <= to) k++;
    c.splice(0, k);
    if (c.length && c[0].start < to) {
      c[0] = { ...c[0], start: to, bytes: c[0].bytes.subarray((to - c[0].start) * this.bytesPerSample) };
    }
    while (this._marks.length && this._marks[0] <= to) this._marks.shift();
  }

  /**
   * What a new session must be sent first, in stream order: `{bytes}` audio and `{finalize: true}` marks.
   * @returns {ReplayEntry[]}
   */
  replayEntries() {
    /** @type {ReplayEntry[]} */
    const out = [];
    let m = 0;
    for (const chunk of this._chunks) {
      while (m < this._marks.length && this._marks[m] <= chunk.start) out.push({ finalize: true }), m++;
      out.push({ bytes: chunk.bytes });
    }
    while (m < this._marks.length) out.push({ finalize: true }), m++;
    return out;
  }

  /**
   * Samples held for replay.
   * @returns {number}
   */
  get heldSamples() {
    return this.totalSamples - this.replayFrom;
  }

  /**
   * For a new session: the stream range [from, to) that no delivered final
   * covers but that the bound already dropped, so it cannot be replayed (null
   * when nothing is missing). Reported once: afterwards it counts as covered.
   * @returns {{ from: number, to: number } | null}
   */
  takeGap() {
    if (this.replayFrom <= this.coveredSample) return null;
    const gap = { from: this.coveredSample, to: this.replayFrom };
    this.coveredSample = this.replayFrom;
    return gap;
  }

  /**
   * Wall-clock ms at which the audio holding stream sample `sample` was sent, if still held.
   * @param {number} sample
   * @returns {number | undefined}
   */
  sentAt(sample) {
    const c = this._chunks;
    let lo = 0;
    let hi = c.length - 1;
    let found;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (c[mid].start <= sample) {
        found = c[mid];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found?.sentAt;
  }
}

/**
 * Gives finals (and the partials/speech_started of the same utterance) a
 * client-side `index` that counts 0, 1, 2, … across sessions, and drops any
 * final whose index was already delivered. Utterance numbers restart at 0 in
 * every session; a session that starts after N delivered finals maps its
 * utterance u to index N + u.
 */
export class FinalSequencer {
  constructor() {
    /** Index the next new final will get. @readonly */
    this.nextIndex = 0;
    /** @private */
    this._base = 0;
    /** @private */
    this._offsetSamples = 0;
  }

  /**
   * A new session starts; its audio clock 0 is stream sample `offsetSamples`.
   * @param {number} offsetSamples
   * @returns {void}
   */
  startSession(offsetSamples) {
    this._base = this.nextIndex;
    this._offsetSamples = offsetSamples;
  }

  /**
   * Stream sample at which the current session's audio clock is 0.
   * @returns {number}
   */
  get offsetSamples() {
    return this._offsetSamples;
  }

  /**
   * The client-side index of the current session's `utterance`.
   * @param {number} utterance
   * @returns {number}
   */
  indexOf(utterance) {
    return this._base + utterance;
  }

  /**
   * Returns true when the final for `utterance` is new (and records it), false for a duplicate.
   * @param {number} utterance
   * @returns {boolean}
   */
  acceptFinal(utterance) {
    const index = this.indexOf(utterance);
    if (index < this.nextIndex) return false;
    this.nextIndex = index + 1;
    return true;
  }
}
