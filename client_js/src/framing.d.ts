export type Encoding = 'pcm_s16le' | 'pcm_f32le';
/** Audio accepted by sendAudio: samples, or bytes already in the announced encoding. */
export type AudioInput = Int16Array | Float32Array | ArrayBuffer | Uint8Array | DataView;

export const ENCODINGS: Readonly<Record<Encoding, number>>;
export function bytesPerSample(encoding: Encoding): number;
export function floatToInt16(samples: Float32Array): Int16Array;
export function int16ToFloat(samples: Int16Array): Float32Array;
/** Little-endian wire bytes (a fresh copy) of `data` in `encoding`. */
export function encodePcm(data: AudioInput, encoding: Encoding): Uint8Array;
export function maxFrameBytes(sampleRate: number, encoding: Encoding, seconds?: number): number;
export function splitFrames(bytes: Uint8Array, maxBytes: number): Uint8Array[];

export class FrameAccumulator {
  constructor(frameSamples: number);
  readonly frameSamples: number;
  push(samples: Float32Array): Float32Array[];
  flush(): Float32Array | null;
}

/** Average equal-length channels into one (into `out` when given). */
export function downmix(channels: readonly Float32Array[], out?: Float32Array): Float32Array;

export interface AudioLevel {
  rms: number;
  peak: number;
  /** RMS in dB relative to full scale, floored at -100. */
  dbfs: number;
}
export function audioLevel(samples: Float32Array): AudioLevel;
