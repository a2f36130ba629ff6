// Generated from the JSDoc in wav.js by `npm run types`: edit wav.js, not this file.
/**
 * @typedef {object} DecodedWav
 * @property {number} sampleRate
 * @property {number} channels
 * @property {Float32Array} samples Downmixed to mono, floats in [-1, 1].
 */
/**
 * Decode a WAV file: 8/16/24/32-bit integer PCM or 32/64-bit float, any
 * channel count. Returns the rate, the channel count and the samples
 * downmixed to mono floats in [-1, 1].
 * @param {ArrayBuffer | Uint8Array} data
 * @returns {DecodedWav}
 */
export function decodeWav(data: ArrayBuffer | Uint8Array): DecodedWav;
export type DecodedWav = {
    sampleRate: number;
    channels: number;
    /**
     * Downmixed to mono, floats in [-1, 1].
     */
    samples: Float32Array;
};
