// Earshot JavaScript SDK: streaming speech-to-text over /v1/listen, for
// browsers and Node >= 20. See README.md for examples.

export * from './client.js';
export { Emitter } from './events.js';
export * from './framing.js';
export {
  LIMITS,
  LISTEN_PATH,
  ProtocolError,
  SERVER_MESSAGE_TYPES,
  buildListenUrl,
  controlMessage,
  parseServerMessage,
} from './messages.js';
export * from './mic.js';
export * from './reconnect.js';
export * from './resample.js';
export * from './wav.js';

/** @typedef {import('./messages.js').ClosedMessage} ClosedMessage */
/** @typedef {import('./messages.js').FinalMessage} FinalMessage */
/** @typedef {import('./messages.js').ListenOptions} ListenOptions */
/** @typedef {import('./messages.js').PartialMessage} PartialMessage */
/** @typedef {import('./messages.js').ReadyMessage} ReadyMessage */
/** @typedef {import('./messages.js').ServerErrorMessage} ServerErrorMessage */
/** @typedef {import('./messages.js').ServerMessage} ServerMessage */
/** @typedef {import('./messages.js').SpeechStartedMessage} SpeechStartedMessage */
/** @typedef {import('./messages.js').Word} Word */
