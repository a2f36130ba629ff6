export * from './client.js';
export { Emitter } from './events.js';
export * from './framing.js';
export {
  LISTEN_PATH,
  ProtocolError,
  SERVER_MESSAGE_TYPES,
  buildListenUrl,
  controlMessage,
  parseServerMessage,
} from './messages.js';
export type {
  ClosedMessage,
  FinalMessage,
  ListenOptions,
  PartialMessage,
  ReadyMessage,
  ServerErrorMessage,
  ServerMessage,
  SpeechStartedMessage,
  Word,
} from './messages.js';
export * from './mic.js';
export * from './reconnect.js';
export * from './resample.js';
export * from './wav.js';
