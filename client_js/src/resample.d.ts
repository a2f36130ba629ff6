// Generated from the JSDoc in resample.js by `npm run types`: edit resample.js, not this file.
/**
 * One-shot conversion of a whole signal.
 * @param {Float32Array} input
 * @param {number} fromRate
 * @param {number} toRate
 * @param {ResamplerOptions} [options]
 * @returns {Float32Array}
 */
export function resample(input: Float32Array, fromRate: number, toRate: number, options?: ResamplerOptions): Float32Array;
/**
 * @typedef {object} ResamplerOptions
 * @property {number} [zeroCrossings] Filter half-length in zero crossings (default 16): quality vs CPU.
 * @property {number} [rolloff] Cutoff as a fraction of the lower Nyquist frequency (default 0.92).
 */
/** Streaming windowed-sinc resampler; output is aligned with the input (no delay in the output timeline). */
export class Resampler {
    /**
     * @param {number} fromRate input rate in Hz (integer)
     * @param {number} toRate output rate in Hz (integer)
     * @param {ResamplerOptions} [options]
     */
    constructor(fromRate: number, toRate: number, { zeroCrossings, rolloff }?: ResamplerOptions);
    /** @readonly */
    readonly fromRate: number;
    /** @readonly */
    readonly toRate: number;
    /** @private */
    private _L;
    /** @private */
    private _M;
    /** @private */
    private _identity;
    /** @private */
    private _fc;
    /** @private */
    private _half;
    /** @private */
    private _phases;
    /** @private */
    private _scratch;
    /**
     * Forget all buffered input: the next `process` starts a new stream.
     * @returns {void}
     */
    reset(): void;
    /** @private */
    private _buf;
    /** @private */
    private _bufStart;
    /** @private */
    private _inCount;
    /** @private */
    private _i;
    /** @private */
    private _phase;
    /** @private */
    private _taps;
    /** @private */
    private _run;
    /**
     * Feed input samples; returns the output samples that are now complete.
     * @param {Float32Array} input
     * @returns {Float32Array}
     */
    process(input: Float32Array): Float32Array;
    /**
     * End of stream: returns the remaining output and resets for a new stream.
     * @returns {Float32Array}
     */
    flush(): Float32Array;
}
export type ResamplerOptions = {
    /**
     * Filter half-length in zero crossings (default 16): quality vs CPU.
     */
    zeroCrossings?: number | undefined;
    /**
     * Cutoff as a fraction of the lower Nyquist frequency (default 0.92).
     */
    rolloff?: number | undefined;
};
