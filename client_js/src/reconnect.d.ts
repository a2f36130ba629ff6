// Generated from the JSDoc in reconnect.js by `npm run types`: edit reconnect.js, not this file.
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
export function isRetryableClose(code: number): boolean;
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
export function backoffDelay(attempt: number, options?: BackoffOptions, code?: number, random?: () => number): number;
/**
 * The audio (and finalize marks) sent since the end of the last delivered
 * final, in stream order, so that a new session can be fed exactly what the
 * old one had not yet turned into finals. Also maps stream samples to the wall
 * time they were sent (for latency). Holds at most `maxReplaySeconds` of audio;
 * beyond that the oldest is dropped, and `takeGap` reports what a replay missed.
 */
export class AudioLedger {
    /** @param {{ sampleRate: number, bytesPerSample: number, maxReplaySeconds?: number }} options */
    constructor({ sampleRate, bytesPerSample, maxReplaySeconds }: {
        sampleRate: number;
        bytesPerSample: number;
        maxReplaySeconds?: number;
    });
    /** @readonly */
    readonly sampleRate: number;
    /** @readonly */
    readonly bytesPerSample: number;
    /** @readonly */
    readonly maxSamples: number;
    /** Stream samples appended so far. @readonly */
    readonly totalSamples: number;
    /** The stream before this sample is covered by delivered finals. @readonly */
    readonly coveredSample: number;
    /** First sample still held (>= coveredSample; more once the bound cut in). @readonly */
    readonly replayFrom: number;
    /** @private @type {{ start: number, bytes: Uint8Array, sentAt: number }[]} contiguous from replayFrom to totalSamples */
    private _chunks;
    /** @private @type {number[]} stream positions of finalize requests, ascending */
    private _marks;
    /**
     * Record encoded audio; returns its stream sample range.
     * @param {Uint8Array} bytes
     * @param {number} [sentAt] wall-clock ms
     * @returns {{ start: number, end: number }}
     */
    append(bytes: Uint8Array, sentAt?: number): {
        start: number;
        end: number;
    };
    /**
     * Record a finalize request at the current stream position, to repeat it on replay.
     * @returns {void}
     */
    markFinalize(): void;
    /**
     * A final covers the stream up to `sample`: that audio is never needed again.
     * @param {number} sample
     * @returns {void}
     */
    acknowledge(sample: number): void;
    /**
     * @private
     * @param {number} to
     */
    private _dropBefore;
    /**
     * What a new session must be sent first, in stream order: `{bytes}` audio and `{finalize: true}` marks.
     * @returns {ReplayEntry[]}
     */
    replayEntries(): ReplayEntry[];
    /**
     * Samples held for replay.
     * @returns {number}
     */
    get heldSamples(): number;
    /**
     * For a new session: the stream range [from, to) that no delivered final
     * covers but that the bound already dropped, so it cannot be replayed (null
     * when nothing is missing). Reported once: afterwards it counts as covered.
     * @returns {{ from: number, to: number } | null}
     */
    takeGap(): {
        from: number;
        to: number;
    } | null;
    /**
     * Wall-clock ms at which the audio holding stream sample `sample` was sent, if still held.
     * @param {number} sample
     * @returns {number | undefined}
     */
    sentAt(sample: number): number | undefined;
}
/**
 * Gives finals (and the partials/speech_started of the same utterance) a
 * client-side `index` that counts 0, 1, 2, … across sessions, and drops any
 * final whose index was already delivered. Utterance numbers restart at 0 in
 * every session; a session that starts after N delivered finals maps its
 * utterance u to index N + u.
 */
export class FinalSequencer {
    /** Index the next new final will get. @readonly */
    readonly nextIndex: number;
    /** @private */
    private _base;
    /** @private */
    private _offsetSamples;
    /**
     * A new session starts; its audio clock 0 is stream sample `offsetSamples`.
     * @param {number} offsetSamples
     * @returns {void}
     */
    startSession(offsetSamples: number): void;
    /**
     * Stream sample at which the current session's audio clock is 0.
     * @returns {number}
     */
    get offsetSamples(): number;
    /**
     * The client-side index of the current session's `utterance`.
     * @param {number} utterance
     * @returns {number}
     */
    indexOf(utterance: number): number;
    /**
     * Returns true when the final for `utterance` is new (and records it), false for a duplicate.
     * @param {number} utterance
     * @returns {boolean}
     */
    acceptFinal(utterance: number): boolean;
}
export type BackoffOptions = {
    /**
     * First delay (default 250).
     */
    initialDelayMs?: number | undefined;
    /**
     * Longest delay (default 10000).
     */
    maxDelayMs?: number | undefined;
    /**
     * Growth per attempt (default 2).
     */
    factor?: number | undefined;
    /**
     * Fraction of the delay that is randomized (0 = none; default 0.5).
     */
    jitter?: number | undefined;
    /**
     * Least delay after close code 1013 (server overloaded; default 1000).
     */
    overloadedDelayMs?: number | undefined;
};
/**
 * One thing to send a new session: audio bytes, or a finalize mark.
 */
export type ReplayEntry = {
    bytes: Uint8Array;
    finalize?: undefined;
} | {
    finalize: true;
    bytes?: undefined;
};
