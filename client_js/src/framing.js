// PCM conversion and framing for the wire. The server takes mono, little-endian
// `pcm_s16le` or `pcm_f32le`, in binary frames of whole samples holding at most
// one second of audio each (PROTOCOL.md, "Client → server").

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
export const ENCODINGS = Object.freeze({ pcm_s16le: 2, pcm_f32le: 4 });

// Typed arrays use the platform's byte order; the wire is little-endian.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * @param {Encoding} encoding
 * @returns {number}
 */
export function bytesPerSample(encoding) {
  const n = ENCODINGS[encoding];
  if (!n) throw new RangeError(`unknown encoding ${JSON.stringify(encoding)}: use pcm_s16le or pcm_f32le`);
  return n;
}

/**
 * Float samples in [-1, 1] to signed 16-bit (scaled by 32768, rounded, clamped).
 * @param {Float32Array} float32
 * @returns {Int16Array}
 */
export function floatToInt16(float32) {
  const out = new Int16Array(float32.length);
  for (let i = 0; i < float32.length; i++) {
    const v = Math.round(float32[i] * 0x8000) || 0; // NaN → 0
    out[i] = v > 0x7fff ? 0x7fff : v < -0x8000 ? -0x8000 : v;
  }
  return out;
}

/**
 * Signed 16-bit samples to floats in [-1, 1).
 * @param {Int16Array} int16
 * @returns {Float32Array}
 */
export function int16ToFloat(int16) {
  const out = new Float32Array(int16.length);
  for (let i = 0; i < int16.length; i++) out[i] = int16[i] / 0x8000;
  return out;
}

function byteSwapInPlace(bytes, width) {
  for (let i = 0; i < bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
  return bytes;
}

// A private little-endian byte copy of a typed array (callers keep ownership of theirs).
function littleEndianBytes(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength).slice();
  return LITTLE_ENDIAN ? bytes : byteSwapInPlace(bytes, typed.BYTES_PER_ELEMENT);
}

/**
 * Encode audio for the wire as a fresh Uint8Array of little-endian bytes.
 * - Int16Array / Float32Array: samples, converted to `encoding` when they differ.
 * - ArrayBuffer, Uint8Array, DataView, Node Buffer: bytes already in `encoding`; copied as they are.
 * @param {AudioInput} data
 * @param {Encoding} encoding
 * @returns {Uint8Array}
 */
export function encodePcm(data, encoding) {
  const width = bytesPerSample(encoding);
  let bytes;
  if (data instanceof Int16Array) {
    bytes = littleEndianBytes(encoding === 'pcm_s16le' ? data : int16ToFloat(data));
  } else if (data instanceof Float32Array) {
    bytes = littleEndianBytes(encoding === 'pcm_f32le' ? data : floatToInt16(data));
  } else if (data instanceof ArrayBuffer) {
    bytes = new Uint8Array(data.slice(0));
  } else if (data instanceof Uint8Array || data instanceof DataView) {
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  } else {
    throw new TypeError('audio must be an Int16Array, Float32Array, ArrayBuffer or Uint8Array');
  }
  if (bytes.length % width !== 0) {
    throw new RangeError(`audio is ${bytes.length} bytes, not a whole number of ${width}-byte ${encoding} samples`);
  }
  return bytes;
}

/**
 * Largest frame in bytes that holds at most `seconds` of audio (whole samples).
 * @param {number} sampleRate
 * @param {Encoding} encoding
 * @param {number} [seconds]
 * @returns {number}
 */
export function maxFrameBytes(sampleRate, encoding, seconds = 1) {
  return Math.max(1, Math.floor(sampleRate * seconds)) * bytesPerSample(encoding);
}

/**
 * Split encoded bytes into views of at most `maxBytes` each (no copy).
 * @param {Uint8Array} bytes
 * @param {number} maxBytes
 * @returns {Uint8Array[]}
 */
export function splitFrames(bytes, maxBytes) {
  const frames = [];
  for (let i = 0; i < bytes.length; i += maxBytes) frames.push(bytes.subarray(i, i + maxBytes));
  return frames;
}

/**
 * Collects samples of any block size and hands out fixed-size frames: the
 * microphone worklet gets 128-sample render quanta but sends 20-100 ms frames.
 */
export class FrameAccumulator {
  /** @param {number} frameSamples */
  constructor(frameSamples) {
    if (!(frameSamples > 0)) throw new RangeError('frameSamples must be positive');
    /** @readonly */
    this.frameSamples = frameSamples;
    /** @private */
    this._frame = new Float32Array(frameSamples);
    /** @private */
    this._fill = 0;
  }

  /**
   * Add samples; returns the frames completed by them (possibly none).
   * @param {Float32Array} samples
   * @returns {Float32Array[]}
   */
  push(samples) {
    const done = [];
    let i = 0;
    while (i < samples.length) {
      const n = Math.min(this.frameSamples - this._fill, samples.length - i);
      this._frame.set(samples.subarray(i, i + n), this._fill);
      this._fill += n;
      i += n;
      if (this._fill === this.frameSamples) {
        done.push(this._frame);
        this._frame = new Float32Array(this.frameSamples);
        this._fill = 0;
      }
    }
    return done;
  }

  /**
   * The incomplete last frame (shorter than frameSamples), or null when empty.
   * @returns {Float32Array | null}
   */
  flush() {
    if (this._fill === 0) return null;
    const rest = this._frame.slice(0, this._fill);
    this._fill = 0;
    return rest;
  }
}

/**
 * Average channels (equal-length Float32Arrays) into one. Writes into `out` when
 * given, so the audio thread can reuse one buffer.
 * @param {readonly Float32Array[]} channels
 * @param {Float32Array} [out]
 * @returns {Float32Array}
 */
export function downmix(channels, out = new Float32Array(channels[0]?.length ?? 0)) {
  if (channels.length === 0) return out.fill(0);
  out.set(channels[0]);
  for (let c = 1; c < channels.length; c++) {
    const ch = channels[c];
    for (let i = 0; i < out.length; i++) out[i] += ch[i];
  }
  if (channels.length > 1) for (let i = 0; i < out.length; i++) out[i] /= channels.length;
  return out;
}

/**
 * RMS and peak of float samples, with the RMS in dBFS (floored at -100).
 * @param {Float32Array} samples
 * @returns {AudioLevel}
 */
export function audioLevel(samples) {
  let sum = 0;
  let peak = 0;
  for (let i = 0; i < samples.length; i++) {
    const a = Math.abs(samples[i]);
    sum += a * a;
    if (a > peak) peak = a;
  }
  const rms = samples.length ? Math.sqrt(sum / samples.length) : 0;
  return { rms, peak, dbfs: rms > 0 ? Math.max(-100, 20 * Math.log10(rms)) : -100 };
}
