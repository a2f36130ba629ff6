import assert from 'node:assert/strict';
import test from 'node:test';
import { Resampler, resample } from '../src/resample.js';

const sine = (freq, rate, seconds, amp = 0.8) =>
  Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => amp * Math.sin((2 * Math.PI * freq * i) / rate));

// Frequency of the strongest component, by a Goertzel scan refined to 0.1 Hz.
function dominantFrequency(x, rate, lo = 20, hi = rate / 2) {
  const power = (f) => {
    const w = (2 * Math.PI * f) / rate;
    const c = 2 * Math.cos(w);
    let s1 = 0;
    let s2 = 0;
    for (let i = 0; i < x.length; i++) {
      const s = x[i] + c * s1 - s2;
      s2 = s1;
      s1 = s;
    }
    return s1 * s1 + s2 * s2 - c * s1 * s2;
  };
  let best = lo;
  for (let step = 10; step >= 0.1; step /= 10) {
    const from = step === 10 ? lo : best - step * 10;
    const to = step === 10 ? hi : best + step * 10;
    let bestP = -1;
    for (let f = from; f <= to; f += step) {
      const p = power(f);
      if (p > bestP) (bestP = p), (best = f);
    }
  }
  return best;
}

const rms = (x, from = 0, to = x.length) => {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i] * x[i];
  return Math.sqrt(s / (to - from));
};

for (const [from, to, freq] of [
  [48000, 16000, 440],
  [44100, 16000, 1000],
  [22050, 16000, 3000],
  [8000, 16000, 440],
  [16000, 48000, 2500],
]) {
  test(`a ${freq} Hz sine keeps its frequency and level from ${from} to ${to} Hz`, () => {
    const out = resample(sine(freq, from, 1), from, to);
    assert.equal(out.length, to); // 1 s in, 1 s out
    const f = dominantFrequency(out.subarray(200, to - 200), to);
    assert.ok(Math.abs(f - freq) < 1, `measured ${f} Hz`);
    const level = rms(out, 200, to - 200);
    assert.ok(Math.abs(level - 0.8 / Math.SQRT2) < 0.01, `rms ${level}`);
  });
}

test('content above the new Nyquist frequency is filtered out, not aliased', () => {
  const full = 0.8 / Math.SQRT2;
  const gainDb = (freq) => {
    const out = resample(sine(freq, 48000, 1), 48000, 16000);
    return 20 * Math.log10(rms(out, 200, out.length - 200) / full);
  };
  // Without the low-pass, 9 kHz would fold to 7 kHz and 12 kHz to 4 kHz at 16 kHz.
  assert.ok(gainDb(9000) < -60, `9 kHz: ${gainDb(9000)} dB`);
  assert.ok(gainDb(12000) < -60, `12 kHz: ${gainDb(12000)} dB`);
  // The speech band passes unchanged.
  for (const f of [300, 3000, 6000]) assert.ok(Math.abs(gainDb(f)) < 0.2, `${f} Hz: ${gainDb(f)} dB`);
});

test('streaming in uneven chunks gives exactly the one-shot output', () => {
  const input = sine(523, 44100, 0.7);
  const whole = resample(input, 44100, 16000);
  const r = new Resampler(44100, 16000);
  const parts = [];
  let seed = 7;
  for (let at = 0; at < input.length; ) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const n = 1 + (seed % 700);
    parts.push(r.process(input.subarray(at, at + n)));
    at += n;
  }
  parts.push(r.flush());
  const streamed = Float32Array.from(parts.flatMap((p) => [...p]));
  assert.equal(streamed.length, whole.length);
  for (let i = 0; i < whole.length; i++) assert.ok(Math.abs(streamed[i] - whole[i]) < 1e-6, `sample ${i}`);
});

test('output is aligned with the input: an impulse stays at the same time', () => {
  const input = new Float32Array(48000);
  input[24000] = 1; // t = 0.5 s
  const out = resample(input, 48000, 16000);
  let peak = 0;
  for (let i = 1; i < out.length; i++) if (Math.abs(out[i]) > Math.abs(out[peak])) peak = i;
  assert.equal(peak, 8000);
});

test('equal rates pass samples through; output length is ceil(n * to / from)', () => {
  const x = sine(100, 16000, 0.01);
  assert.deepEqual(resample(x, 16000, 16000), x);
  assert.equal(resample(new Float32Array(1001), 48000, 16000).length, 334);
  assert.equal(resample(new Float32Array(441), 44100, 16000).length, 160);
  const r = new Resampler(48000, 16000);
  assert.equal(r.flush().length, 0);
});

test('bad rates are refused', () => {
  assert.throws(() => new Resampler(0, 16000), RangeError);
  assert.throws(() => new Resampler(44100.5, 16000), RangeError);
});
