// Streaming sample-rate conversion with a windowed-sinc (Blackman) low-pass
// filter: microphones run at 44.1/48 kHz, Earshot wants 16 kHz, and naive
// decimation would fold everything above 8 kHz back into the speech band.
//
// Output sample k sits exactly at input position k * from / to (zero delay in
// the output timeline), so timestamps computed from output sample counts stay
// aligned with the input. Streaming output is identical to one-shot output.

const MAX_CACHED_PHASES = 4096;

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

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
  constructor(fromRate, toRate, { zeroCrossings = 16, rolloff = 0.92 } = {}) {
    for (const [name, r] of [['fromRate', fromRate], ['toRate', toRate]]) {
      if (!Number.isInteger(r) || r <= 0) throw new RangeError(`${name} must be a positive integer, got ${r}`);
    }
    /** @readonly */
    this.fromRate = fromRate;
    /** @readonly */
    this.toRate = toRate;
    const g = gcd(fromRate, toRate);
    /** @private */
    this._L = toRate / g; // output steps per M input samples
    /** @private */
    this._M = fromRate / g;
    /** @private */
    this._identity = fromRate === toRate;
    /** @private */
    this._fc = Math.min(1, toRate / fromRate) * rolloff; // cutoff, relative to the input Nyquist
    /** @private */
    this._half = Math.ceil(zeroCrossings / this._fc); // filter half-width in input samples
    /** @private */
    this._phases = this._L <= MAX_CACHED_PHASES ? new Array(this._L) : null;
    /** @private */
    this._scratch = new Float32Array(2 * this._half);
    this.reset();
  }

  /**
   * Forget all buffered input: the next `process` starts a new stream.
   * @returns {void}
   */
  reset() {
    /** @private */
    this._buf = new Float32Array(0);
    /** @private */
    this._bufStart = 0; // absolute input index of _buf[0]
    /** @private */
    this._inCount = 0;
    /** @private */
    this._i = 0; // next output sits at input position _i + _phase / _L
    /** @private */
    this._phase = 0;
  }

  // Filter taps for a fractional offset phase/L, normalized to unit DC gain.
  /** @private */
  _taps(phase) {
    if (this._phases && this._phases[phase]) return this._phases[phase];
    const H = this._half;
    const taps = this._phases ? new Float32Array(2 * H) : this._scratch;
    const f = phase / this._L;
    let sum = 0;
    for (let t = 0; t < 2 * H; t++) {
      const x = t - H + 1 - f; // distance from the output position, in input samples
      const u = x / H;
      const w = Math.abs(u) >= 1 ? 0 : 0.42 + 0.5 * Math.cos(Math.PI * u) + 0.08 * Math.cos(2 * Math.PI * u);
      const a = Math.PI * this._fc * x;
      const v = (x === 0 ? 1 : Math.sin(a) / a) * w;
      taps[t] = v;
      sum += v;
    }
    for (let t = 0; t < 2 * H; t++) taps[t] /= sum;
    if (this._phases) this._phases[phase] = taps;
    return taps;
  }

  /** @private */
  _run(final) {
    const H = this._half;
    const L = this._L;
    const M = this._M;
    const buf = this._buf;
    const start = this._bufStart;
    const end = start + buf.length;
    const out = new Float32Array(Math.ceil(((end - this._i + 1) * L) / M) + 2);
    let n = 0;
    let i = this._i;
    let phase = this._phase;
    // While streaming, wait until all taps' inputs have arrived; at the end,
    // pad with silence and emit every output whose position is inside the input.
    while (final ? i * L + phase < this._inCount * L : i + H < end) {
      const taps = this._taps(phase);
      let acc = 0;
      const base = i - H + 1 - start; // index in buf of the first tap
      const t0 = Math.max(0, -base);
      const t1 = Math.min(2 * H, buf.length - base);
      for (let t = t0; t < t1; t++) acc += taps[t] * buf[base + t];
      out[n++] = acc;
      phase += M;
      i += Math.floor(phase / L);
      phase %= L;
    }
    this._i = i;
    this._phase = phase;
    // Keep only the input that later outputs can still reach.
    const drop = Math.min(buf.length, Math.max(0, i - H + 1 - start));
    if (drop > 0) {
      this._buf = buf.slice(drop);
      this._bufStart = start + drop;
    }
    return out.slice(0, n);
  }

  /**
   * Feed input samples; returns the output samples that are now complete.
   * @param {Float32Array} input
   * @returns {Float32Array}
   */
  process(input) {
    if (this._identity) return Float32Array.from(input);
    const merged = new Float32Array(this._buf.length + input.length);
    merged.set(this._buf);
    merged.set(input, this._buf.length);
    this._buf = merged;
    this._inCount += input.length;
    return this._run(false);
  }

  /**
   * End of stream: returns the remaining output and resets for a new stream.
   * @returns {Float32Array}
   */
  flush() {
    const rest = this._identity ? new Float32Array(0) : this._run(true);
    this.reset();
    return rest;
  }
}

/**
 * One-shot conversion of a whole signal.
 * @param {Float32Array} input
 * @param {number} fromRate
 * @param {number} toRate
 * @param {ResamplerOptions} [options]
 * @returns {Float32Array}
 */
export function resample(input, fromRate, toRate, options) {
  const r = new Resampler(fromRate, toRate, options);
  const a = r.process(input);
  const b = r.flush();
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
