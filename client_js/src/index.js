// Earshot JavaScript SDK: streaming speech-to-text over /v1/listen, for
// browsers and Node >= 20. See README.md for examples.

export { EarshotClient, EarshotError, STREAM_EVENTS, connect } from './client.js';
export { Emitter } from './events.js';
export {
  ENCODINGS,
  FrameAccumulator,
  audioLevel,
  bytesPerSample,
  downmix,
  encodePcm,
  floatToInt16,
  int16ToFloat,
  maxFrameBytes,
  splitFrames,
} from './framing.js';
export {
  LISTEN_PATH,
  ProtocolError,
  SERVER_MESSAGE_TYPES,
  buildListenUrl,
  controlMessage,
  parseServerMessage,
} from './messages.js';
export { MicrophoneCapture, MicrophoneError, microphoneErrorFrom } from './mic.js';
export { AudioLedger, FinalSequencer, backoffDelay, isRetryableClose } from './reconnect.js';
export { Resampler, resample } from './resample.js';
export { decodeWav } from './wav.js';
