// Generated from the JSDoc in framing.js by `npm run types`: edit framing.js, not this file.
/**
 * @param {Encoding} encoding
 * @returns {number}
 */
export function bytesPerSample(encoding: Encoding): number;
/**
 * Float samples in [-1, 1] to signed 16-bit (scaled by 32768, rounded, clamped).
 * @param {Float32Array} float32
 * @returns {Int16Array}
 */
export function floatToInt16(float32: Float32Array): Int16Array;
/**
 * Signed 16-bit samples to floats in [-1, 1).
 * @param {Int16Array} int16
 * @returns {Float32Array}
 */
export function int16ToFloat(int16: Int16Array): Float32Array;
/**
 * Encode audio for the wire as a fresh Uint8Array of little-endian bytes.
 * - Int16Array / Float32Array: samples, converted to `encoding` when they differ.
 * - ArrayBuffer, Uint8Array, DataView, Node Buffer: bytes already in `encoding`; copied as they are.
 * @param {AudioInput} data
 * @param {Encoding} encoding
 * @returns {Uint8Array}
 */
export function encodePcm(data: AudioInput, encoding: Encoding): Uint8Array;
/**
 * Largest frame in bytes that holds at most `seconds` of audio (whole samples).
 * @param {number} sampleRate
 * @param {Encoding} encoding
 * @param {number} [seconds]
 * @returns {number}
 */
export function maxFrameBytes(sampleRate: number, encoding: Encoding, seconds?: number): number;
/**
 * Split encoded bytes into views of at most `maxBytes` each (no copy).
 * @param {Uint8Array} bytes
 * @param {number} maxBytes
 * @returns {Uint8Array[]}
 */
export function splitFrames(bytes: Uint8Array, maxBytes: number): Uint8Array[];
/**
 * Average channels (equal-length Float32Arrays) into one. Writes into `out` when
 * given, so the audio thread can reuse one buffer.
 * @param {readonly Float32Array[]} channels
 * @param {Float32Array} [out]
 * @returns {Float32Array}
 */
export function downmix(channels: readonly Float32Array[], out?: Float32Array): Float32Array;
/**
 * RMS and peak of float samples, with the RMS in dBFS (floored at -100).
 * @param {Float32Array} samples
 * @returns {AudioLevel}
 */
export function audioLevel(samples: Float32Array): AudioLevel;
/** @typedef {'pcm_s16le' | 'pcm_f32le'} Encoding */
/**
 * Audio accepted by sendAudio: samples, or bytes already in the announced encoding.
 * @typedef {Int16Array | Float32Array | ArrayBuffer | Uint8Array | DataView} AudioInput
 */
/**
 * @typedef {object} AudioLevel
 * @property {number} rms
 * @property {number} peak
 * @property {number} dbfs RMS in dB relative to full scale, floored at -100.
 */
/**
 * Bytes per sample of each wire encoding.
 * @type {Readonly<Record<Encoding, number>>}
 */
export const ENCODINGS: Readonly<Record<Encoding, number>>;
/**
 * Collects samples of any block size and hands out fixed-size frames: the
 * microphone worklet gets 128-sample render quanta but sends 20-100 ms frames.
 */
export class FrameAccumulator {
    /** @param {number} frameSamples */
    constructor(frameSamples: number);
    /** @readonly */
    readonly frameSamples: number;
    /** @private */
    private _frame;
    /** @private */
    private _fill;
    /**
     * Add samples; returns the frames completed by them (possibly none).
     * @param {Float32Array} samples
     * @returns {Float32Array[]}
     */
    push(samples: Float32Array): Float32Array[];
    /**
     * The incomplete last frame (shorter than frameSamples), or null when empty.
     * @returns {Float32Array | null}
     */
    flush(): Float32Array | null;
}
export type Encoding = "pcm_s16le" | "pcm_f32le";
/**
 * Audio accepted by sendAudio: samples, or bytes already in the announced encoding.
 */
export type AudioInput = Int16Array | Float32Array | ArrayBuffer | Uint8Array | DataView;
export type AudioLevel = {
    rms: number;
    peak: number;
    /**
     * RMS in dB relative to full scale, floored at -100.
     */
    dbfs: number;
};
