// Minimal WAV (RIFF) reader, so Node programs and tests can stream files
// without an audio library. Browsers can use AudioContext.decodeAudioData,
// which reads more formats.

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
export function decodeWav(data) {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at) => String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('not a RIFF/WAVE file');
  let fmt = null;
  let dataAt = -1;
  let dataLen = 0;
  for (let at = 12; at + 8 <= bytes.length; ) {
    const id = tag(at);
    const len = view.getUint32(at + 4, true);
    if (id === 'fmt ') {
      let format = view.getUint16(at + 8, true);
      if (format === 0xfffe && len >= 26) format = view.getUint16(at + 32, true); // WAVE_FORMAT_EXTENSIBLE
      fmt = {
        format,
        channels: view.getUint16(at + 10, true),
        sampleRate: view.getUint32(at + 12, true),
        bits: view.getUint16(at + 22, true),
      };
    } else if (id === 'data') {
      dataAt = at + 8;
      dataLen = Math.min(len, bytes.length - dataAt); // tolerate a truncated or streamed (0xFFFFFFFF) length
      break;
    }
    at += 8 + len + (len & 1);
  }
  if (!fmt || dataAt < 0) throw new Error('WAV file without fmt or data chunk');
  const { format, channels, sampleRate, bits } = fmt;
  const width = bits / 8;
  const read = {
    '1:8': (p) => (bytes[p] - 128) / 128,
    '1:16': (p) => view.getInt16(p, true) / 32768,
    '1:24': (p) => ((view.getUint8(p + 2) << 24) | (view.getUint8(p + 1) << 16) | (view.getUint8(p) << 8)) / 2147483648,
    '1:32': (p) => view.getInt32(p, true) / 2147483648,
    '3:32': (p) => view.getFloat32(p, true),
    '3:64': (p) => view.getFloat64(p, true),
  }[`${format}:${bits}`];
  if (!read || !channels) throw new Error(`unsupported WAV encoding (format ${format}, ${bits} bits, ${channels} channels)`);
  const frames = Math.floor(dataLen / (width * channels));
  const mono = new Float32Array(frames);
  for (let i = 0, p = dataAt; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < channels; c++, p += width) sum += read(p);
    mono[i] = sum / channels;
  }
  return { sampleRate, channels, samples: mono };
}
