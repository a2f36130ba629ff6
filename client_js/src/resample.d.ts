export interface ResamplerOptions {
  /** Filter half-length in zero crossings (default 16). */
  zeroCrossings?: number;
  /** Cutoff as a fraction of the lower Nyquist frequency (default 0.92). */
  rolloff?: number;
}

/** Streaming windowed-sinc resampler; output is aligned with the input (no delay in the output timeline). */
export class Resampler {
  constructor(fromRate: number, toRate: number, options?: ResamplerOptions);
  readonly fromRate: number;
  readonly toRate: number;
  /** Feed samples; returns the output that is complete so far. */
  process(input: Float32Array): Float32Array;
  /** End of stream: the remaining output; the resampler is then ready for a new stream. */
  flush(): Float32Array;
  reset(): void;
}

export function resample(input: Float32Array, fromRate: number, toRate: number, options?: ResamplerOptions): Float32Array;
