// AudioWorklet processor for microphone capture (runs on the audio thread).
// Downmixes the input to mono, resamples it to the target rate, and posts
// fixed-size frames of 16-bit PCM with their level to the main thread.
// Loaded by mic.js through audioWorklet.addModule(); it shares the SDK's
// resampler and PCM conversion instead of carrying copies.

import { FrameAccumulator, audioLevel, downmix, floatToInt16 } from './framing.js';
import { Resampler } from './resample.js';

class EarshotCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, frameSamples } = options.processorOptions;
    // `sampleRate` is the AudioContext's rate (a global of the worklet scope).
    this._resampler = new Resampler(Math.round(sampleRate), targetRate);
    this._frames = new FrameAccumulator(frameSamples);
    this._mono = new Float32Array(128);
    this._running = true;
    this.port.onmessage = (e) => {
      if (e.data?.type === 'stop') {
        // Send what is still buffered (resampler tail and partial frame), then end.
        const tail = this._frames.push(this._resampler.flush());
        const rest = this._frames.flush();
        for (const frame of rest ? [...tail, rest] : tail) this._post(frame);
        this._running = false;
        this.port.postMessage({ type: 'stopped' });
      }
    };
  }

  _post(frame) {
    const pcm = floatToInt16(frame);
    this.port.postMessage({ type: 'audio', pcm, level: audioLevel(frame) }, [pcm.buffer]);
  }

  process(inputs) {
    if (!this._running) return false;
    const channels = inputs[0];
    // No channels: the source is not connected (yet) or the device went away.
    if (channels && channels.length > 0) {
      if (this._mono.length !== channels[0].length) this._mono = new Float32Array(channels[0].length);
      const mono = downmix(channels, this._mono);
      for (const frame of this._frames.push(this._resampler.process(mono))) this._post(frame);
    }
    return true; // outputs stay silent; returning true keeps the node alive
  }
}

registerProcessor('earshot-capture', EarshotCaptureProcessor);
