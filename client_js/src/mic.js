// Browser microphone capture: getUserMedia → AudioWorklet (mic-worklet.js) →
// 16-bit PCM frames at the rate Earshot wants, plus a level meter.
//
//   const mic = new MicrophoneCapture({ sampleRate: 16000, frameMs: 50 });
//   mic.on('audio', (pcm) => stream.sendAudio(pcm));   // Int16Array frames
//   mic.on('level', ({ dbfs }) => meter.value = dbfs);
//   mic.on('error', (err) => show(err.message));        // e.g. device unplugged
//   await mic.start();  …  await mic.stop();

import { Emitter } from './events.js';

/**
 * @typedef {'permission_denied' | 'no_device' | 'device_busy' | 'device_lost' | 'insecure_context' | 'unsupported' | 'audio_failed'} MicrophoneErrorCode
 */
/**
 * @typedef {object} MicrophoneOptions
 * @property {number} [sampleRate] Rate of the PCM frames handed out (default 16000).
 * @property {number} [frameMs] Frame length in ms, 20-100 (default 50).
 * @property {string} [deviceId] A device from enumerateDevices().
 * @property {Record<string, unknown>} [constraints] Extra getUserMedia audio constraints (echoCancellation, noiseSuppression, …).
 * @property {string | { href: string }} [workletUrl] Where mic-worklet.js is served (default: next to mic.js).
 */
/**
 * @typedef {object} MicrophoneEvents
 * @property {Int16Array} audio One frame of 16-bit mono PCM at `sampleRate`.
 * @property {import('./framing.js').AudioLevel} level
 * @property {MicrophoneError} error
 * @property {{ type: 'start', inputSampleRate: number, deviceLabel: string | undefined }} start
 * @property {{ type: 'stop', reason: 'stopped' | 'device_lost' }} stop
 */

/** @type {Readonly<Record<MicrophoneErrorCode, string>>} */
const MESSAGES = {
  permission_denied: 'Microphone access was denied. Allow the microphone for this site (see the address bar) and try again.',
  no_device: 'No microphone was found. Connect one (or pick another device) and try again.',
  device_busy: 'The microphone could not be started: another application may be using it.',
  device_lost: 'The microphone stopped delivering audio (unplugged, disabled or taken away).',
  insecure_context: 'Microphone access needs a secure page: open it over https:// or on localhost.',
  unsupported: 'This browser cannot capture audio here (no getUserMedia or AudioWorklet).',
  audio_failed: 'The audio pipeline could not be started.',
};

/** A capture problem; `code` is one of the keys of MicrophoneError.MESSAGES. */
export class MicrophoneError extends Error {
  /** What each code means, as shown to users. */
  static MESSAGES = MESSAGES;

  /**
   * @param {MicrophoneErrorCode} code
   * @param {string} [detail]
   */
  constructor(code, detail) {
    super(detail ? `${MESSAGES[code] ?? code} (${detail})` : MESSAGES[code] ?? code);
    this.name = 'MicrophoneError';
    /** @type {MicrophoneErrorCode} */
    this.code = code;
  }
}

/**
 * Map a getUserMedia DOMException to a MicrophoneError.
 * @param {unknown} error
 * @returns {MicrophoneError}
 */
export function microphoneErrorFrom(error) {
  const e = /** @type {{ name?: string, message?: string } | undefined} */ (error);
  switch (e?.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return new MicrophoneError('permission_denied', e.message);
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return new MicrophoneError('no_device', e.message);
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return new MicrophoneError('device_busy', e.message);
    default:
      return new MicrophoneError('audio_failed', e?.message ?? String(error));
  }
}

/**
 * Microphone capture: 16-bit mono PCM frames at `sampleRate`, and their level.
 * @extends {Emitter<MicrophoneEvents>}
 */
export class MicrophoneCapture extends Emitter {
  /** @param {MicrophoneOptions} [options] */
  constructor({ sampleRate = 16000, frameMs = 50, deviceId, constraints = {}, workletUrl } = {}) {
    super();
    if (!(frameMs >= 20 && frameMs <= 100)) throw new RangeError('frameMs must be between 20 and 100');
    /** @readonly */
    this.sampleRate = sampleRate;
    /** @readonly */
    this.frameMs = frameMs;
    /** @readonly */
    this.deviceId = deviceId;
    /** @readonly */
    this.constraints = constraints;
    /** @readonly @type {string | { href: string }} */
    this.workletUrl = workletUrl ?? new URL('./mic-worklet.js', import.meta.url);
    /** @readonly */
    this.active = false;
    /** The AudioContext's (device-side) rate once started. @readonly @type {number | undefined} */
    this.inputSampleRate = undefined;
    /** @readonly @type {string | undefined} */
    this.deviceLabel = undefined;
    /** The latest { rms, peak, dbfs } of a frame. @readonly @type {import('./framing.js').AudioLevel} */
    this.level = { rms: 0, peak: 0, dbfs: -100 };
    /** @private @type {any} */
    this._parts = null;
    /** @private @type {(() => void) | null} */
    this._stopped = null;
  }

  /**
   * Ask for the microphone and start producing 'audio' and 'level' events. Rejects with MicrophoneError.
   * @returns {Promise<void>}
   */
  async start() {
    if (this.active) return;
    const media = globalThis.navigator?.mediaDevices;
    if (!media?.getUserMedia) {
      throw new MicrophoneError(globalThis.isSecureContext === false ? 'insecure_context' : 'unsupported');
    }
    if (typeof globalThis.AudioWorkletNode !== 'function') throw new MicrophoneError('unsupported', 'no AudioWorklet');
    let stream;
    try {
      const audio = { ...this.constraints, ...(this.deviceId ? { deviceId: { exact: this.deviceId } } : {}) };
      stream = await media.getUserMedia({ audio: Object.keys(audio).length ? audio : true, video: false });
    } catch (e) {
      throw microphoneErrorFrom(e);
    }
    const parts = { stream, context: null, source: null, node: null };
    try {
      parts.context = new AudioContext({ latencyHint: 'interactive' });
      await parts.context.audioWorklet.addModule(this.workletUrl);
      parts.source = parts.context.createMediaStreamSource(stream);
      parts.node = new AudioWorkletNode(parts.context, 'earshot-capture', {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { targetRate: this.sampleRate, frameSamples: Math.round((this.sampleRate * this.frameMs) / 1000) },
      });
      parts.node.port.onmessage = (e) => this._onWorkletMessage(e.data);
      parts.source.connect(parts.node);
      // The node writes silence; connecting it to the output keeps the graph pulled.
      parts.node.connect(parts.context.destination);
      if (parts.context.state !== 'running') await parts.context.resume();
    } catch (e) {
      this._teardown(parts);
      throw new MicrophoneError('audio_failed', e?.message ?? String(e));
    }
    const track = stream.getAudioTracks()[0];
    parts.onEnded = () => this._lost();
    track?.addEventListener('ended', parts.onEnded);
    this._parts = parts;
    this.active = true;
    this.inputSampleRate = parts.context.sampleRate;
    this.deviceLabel = track?.label;
    this.emit('start', { type: 'start', inputSampleRate: this.inputSampleRate, deviceLabel: this.deviceLabel });
  }

  /**
   * Stop capturing; the audio still buffered in the worklet is delivered first.
   * @returns {Promise<void>}
   */
  async stop() {
    if (!this.active) return;
    const parts = this._parts;
    this.active = false;
    await new Promise((resolve) => {
      this._stopped = resolve;
      parts.node.port.postMessage({ type: 'stop' });
      setTimeout(resolve, 300); // the audio thread may already be gone
    });
    this._stopped = null;
    this._teardown(parts);
    this._parts = null;
    this.emit('stop', { type: 'stop', reason: 'stopped' });
  }

  /**
   * @private
   * @param {any} data
   */
  _onWorkletMessage(data) {
    if (data.type === 'audio') {
      this.level = data.level;
      this.emit('audio', data.pcm);
      this.emit('level', data.level);
    } else if (data.type === 'stopped') {
      this._stopped?.();
    }
  }

  /**
   * The device went away (unplugged, permission revoked, OS took it).
   * @private
   */
  _lost() {
    if (!this.active) return;
    const parts = this._parts;
    this.active = false;
    this._parts = null;
    this._teardown(parts);
    this.emit('error', new MicrophoneError('device_lost'));
    this.emit('stop', { type: 'stop', reason: 'device_lost' });
  }

  /**
   * @private
   * @param {any} parts
   */
  _teardown(parts) {
    if (!parts) return;
    for (const track of parts.stream?.getTracks() ?? []) {
      if (parts.onEnded) track.removeEventListener('ended', parts.onEnded);
      track.stop();
    }
    try {
      parts.source?.disconnect();
      parts.node?.disconnect();
    } catch {
      // already disconnected
    }
    if (parts.node) parts.node.port.onmessage = null;
    parts.context?.close().catch(() => {});
  }
}
