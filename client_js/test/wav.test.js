import assert from 'node:assert/strict';
import test from 'node:test';
import { decodeWav } from '../src/wav.js';

// Build a WAV file in memory: `frames` is an array of per-channel sample arrays.
function wav({ sampleRate, format = 1, bits, frames, extraChunk = false }) {
  const channels = frames[0].length;
  const width = bits / 8;
  const dataLen = frames.length * channels * width;
  const extra = extraChunk ? 8 + 3 + 1 : 0; // odd-length LIST chunk plus its pad byte
  const buf = new ArrayBuffer(44 + extra + dataLen);
  const v = new DataView(buf);
  const str = (at, s) => [...s].forEach((c, i) => v.setUint8(at + i, c.charCodeAt(0)));
  str(0, 'RIFF');
  v.setUint32(4, 36 + extra + dataLen, true);
  str(8, 'WAVE');
  str(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, format, true);
  v.setUint16(22, channels, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * channels * width, true);
  v.setUint16(32, channels * width, true);
  v.setUint16(34, bits, true);
  let at = 36;
  if (extraChunk) {
    str(at, 'LIST');
    v.setUint32(at + 4, 3, true);
    at += 12;
  }
  str(at, 'data');
  v.setUint32(at + 4, dataLen, true);
  at += 8;
  for (const frame of frames) {
    for (const s of frame) {
      if (format === 3) v.setFloat32(at, s, true);
      else v.setInt16(at, Math.round(s * 32768), true);
      at += width;
    }
  }
  return new Uint8Array(buf);
}

test('16-bit mono PCM', () => {
  const out = decodeWav(wav({ sampleRate: 16000, bits: 16, frames: [[0.5], [-0.25], [0]] }));
  assert.equal(out.sampleRate, 16000);
  assert.equal(out.channels, 1);
  assert.deepEqual([...out.samples], [0.5, -0.25, 0]);
});

test('stereo is averaged to mono; unknown chunks (odd length) are skipped', () => {
  const out = decodeWav(wav({ sampleRate: 44100, bits: 16, frames: [[0.5, 0], [0.25, 0.25]], extraChunk: true }));
  assert.equal(out.channels, 2);
  assert.deepEqual([...out.samples], [0.25, 0.25]);
});

test('32-bit float', () => {
  const out = decodeWav(wav({ sampleRate: 48000, format: 3, bits: 32, frames: [[0.125], [-1]] }).buffer);
  assert.deepEqual([...out.samples], [0.125, -1]);
});

test('not a WAV file', () => {
  assert.throws(() => decodeWav(new Uint8Array(20)), /RIFF/);
});
