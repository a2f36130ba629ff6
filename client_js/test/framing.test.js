import assert from 'node:assert/strict';
import test from 'node:test';
import {
  FrameAccumulator,
  audioLevel,
  downmix,
  encodePcm,
  floatToInt16,
  int16ToFloat,
  maxFrameBytes,
  splitFrames,
} from '../src/framing.js';

const le16 = (bytes, i) => bytes[2 * i] | ((bytes[2 * i + 1] << 24) >> 16);

test('floatToInt16 scales, rounds and clamps', () => {
  const out = floatToInt16(new Float32Array([0, 1, -1, 0.5, -0.5, 2, -2, NaN, 1e-6]));
  assert.deepEqual([...out], [0, 32767, -32768, 16384, -16384, 32767, -32768, 0, 0]);
});

test('int16 → float → int16 is lossless', () => {
  const src = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);
  assert.deepEqual(floatToInt16(int16ToFloat(src)), src);
});

test('encodePcm writes little-endian s16 from Int16Array and copies the input', () => {
  const src = new Int16Array([1, -2, 0x1234, -32768]);
  const bytes = encodePcm(src, 'pcm_s16le');
  assert.deepEqual([...bytes], [0x01, 0x00, 0xfe, 0xff, 0x34, 0x12, 0x00, 0x80]);
  src[0] = 99; // the caller may reuse its buffer
  assert.equal(le16(bytes, 0), 1);
});

test('encodePcm converts Float32Array to s16 and Int16Array to f32', () => {
  const s16 = encodePcm(new Float32Array([0.5, -1]), 'pcm_s16le');
  assert.deepEqual([le16(s16, 0), le16(s16, 1)], [16384, -32768]);
  const f32 = encodePcm(new Int16Array([16384, -32768]), 'pcm_f32le');
  const view = new DataView(f32.buffer);
  assert.deepEqual([view.getFloat32(0, true), view.getFloat32(4, true)], [0.5, -1]);
  const same = encodePcm(new Float32Array([0.25]), 'pcm_f32le');
  assert.equal(new DataView(same.buffer).getFloat32(0, true), 0.25);
});

test('encodePcm passes raw bytes through, of a subarray view only', () => {
  const backing = new Uint8Array([9, 9, 1, 0, 2, 0, 9]);
  assert.deepEqual([...encodePcm(backing.subarray(2, 6), 'pcm_s16le')], [1, 0, 2, 0]);
  assert.deepEqual([...encodePcm(new Uint8Array([5, 0]).buffer, 'pcm_s16le')], [5, 0]);
  assert.deepEqual([...encodePcm(Buffer.from([7, 0]), 'pcm_s16le')], [7, 0]);
});

test('encodePcm refuses partial samples, unknown encodings and other types', () => {
  assert.throws(() => encodePcm(new Uint8Array(3), 'pcm_s16le'), RangeError);
  assert.throws(() => encodePcm(new Uint8Array(6), 'pcm_f32le'), RangeError);
  assert.throws(() => encodePcm(new Int16Array(2), 'mulaw'), RangeError);
  assert.throws(() => encodePcm([1, 2], 'pcm_s16le'), TypeError);
});

test('frames hold at most one second of whole samples', () => {
  assert.equal(maxFrameBytes(16000, 'pcm_s16le'), 32000);
  assert.equal(maxFrameBytes(44100, 'pcm_f32le'), 176400);
  const frames = splitFrames(new Uint8Array(32000 * 2 + 10), maxFrameBytes(16000, 'pcm_s16le'));
  assert.deepEqual(frames.map((f) => f.length), [32000, 32000, 10]);
  assert.deepEqual(splitFrames(new Uint8Array(0), 100), []);
});

test('FrameAccumulator turns 128-sample quanta into exact frames, in order', () => {
  const acc = new FrameAccumulator(320); // 20 ms at 16 kHz
  const out = [];
  let v = 0;
  for (let q = 0; q < 10; q++) {
    const block = Float32Array.from({ length: 128 }, () => v++);
    out.push(...acc.push(block));
  }
  assert.equal(out.length, 4); // 1280 samples → 4 frames of 320
  assert.ok(out.every((f) => f.length === 320));
  assert.deepEqual([...out.flatMap((f) => [...f])], Array.from({ length: 1280 }, (_, i) => i));
  assert.equal(acc.flush(), null);
  acc.push(new Float32Array(5));
  assert.equal(acc.flush().length, 5);
});

test('audioLevel reports rms, peak and dBFS', () => {
  const sine = Float32Array.from({ length: 16000 }, (_, i) => 0.5 * Math.sin((2 * Math.PI * 440 * i) / 16000));
  const l = audioLevel(sine);
  assert.ok(Math.abs(l.rms - 0.5 / Math.SQRT2) < 1e-3);
  assert.ok(Math.abs(l.peak - 0.5) < 1e-3);
  assert.ok(Math.abs(l.dbfs - -9.03) < 0.05);
  assert.equal(audioLevel(new Float32Array(10)).dbfs, -100);
});

test('downmix averages channels, into a reused buffer when given', () => {
  const left = new Float32Array([1, 0.5, 0]);
  const right = new Float32Array([0, 0.5, -1]);
  assert.deepEqual([...downmix([left, right])], [0.5, 0.5, -0.5]);
  assert.deepEqual([...downmix([left])], [1, 0.5, 0]);
  const out = new Float32Array(3);
  assert.equal(downmix([left, right], out), out);
});
