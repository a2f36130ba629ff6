// Generated from the JSDoc in index.js by `npm run types`: edit index.js, not this file.
export * from "./client.js";
export * from "./framing.js";
export * from "./mic.js";
export * from "./reconnect.js";
export * from "./resample.js";
export * from "./wav.js";
export { Emitter } from "./events.js";
export type ClosedMessage = import("./messages.js").ClosedMessage;
export type FinalMessage = import("./messages.js").FinalMessage;
export type ListenOptions = import("./messages.js").ListenOptions;
export type PartialMessage = import("./messages.js").PartialMessage;
export type ReadyMessage = import("./messages.js").ReadyMessage;
export type ServerErrorMessage = import("./messages.js").ServerErrorMessage;
export type ServerMessage = import("./messages.js").ServerMessage;
export type SpeechStartedMessage = import("./messages.js").SpeechStartedMessage;
export type Word = import("./messages.js").Word;
export { LIMITS, LISTEN_PATH, ProtocolError, SERVER_MESSAGE_TYPES, buildListenUrl, controlMessage, parseServerMessage } from "./messages.js";
