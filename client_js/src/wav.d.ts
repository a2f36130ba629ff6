export interface DecodedWav {
  sampleRate: number;
  channels: number;
  /** Downmixed to mono, floats in [-1, 1]. */
  samples: Float32Array;
}
/** Decode an 8/16/24/32-bit PCM or 32/64-bit float WAV file. */
export function decodeWav(data: ArrayBuffer | Uint8Array): DecodedWav;
