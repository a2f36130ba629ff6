// Generated from the JSDoc in events.js by `npm run types`: edit events.js, not this file.
/**
 * Async iterator over an emitter's events of `types`, buffered from the moment
 * it is created, ending after an event of type `endType` has been yielded.
 * @template {{ type: string }} T
 * @param {Emitter<any>} emitter
 * @param {readonly string[]} types
 * @param {string} endType
 * @param {boolean} [alreadyEnded]
 * @returns {AsyncIterableIterator<T>}
 */
export function iterateEvents<T extends {
    type: string;
}>(emitter: Emitter<any>, types: readonly string[], endType: string, alreadyEnded?: boolean): AsyncIterableIterator<T>;
/**
 * Minimal typed event emitter shared by the client and the microphone capture.
 * @template {object} [Events=Record<string, unknown>]
 */
export class Emitter<Events extends object = Record<string, unknown>> {
    /** @private @type {Map<string, Set<(event: any) => void>>} */
    private _listeners;
    /**
     * Subscribe; returns a function that unsubscribes. Type '*' receives every event.
     * @template {keyof Events & string} K
     * @param {K | '*'} type
     * @param {(event: Events[K]) => void} listener
     * @returns {() => void}
     */
    on<K extends keyof Events & string>(type: K | "*", listener: (event: Events[K]) => void): () => void;
    /**
     * @template {keyof Events & string} K
     * @param {K | '*'} type
     * @param {(event: Events[K]) => void} listener
     * @returns {void}
     */
    off<K extends keyof Events & string>(type: K | "*", listener: (event: Events[K]) => void): void;
    /**
     * Resolves with the next event of `type`.
     * @template {keyof Events & string} K
     * @param {K} type
     * @returns {Promise<Events[K]>}
     */
    once<K extends keyof Events & string>(type: K): Promise<Events[K]>;
    /**
     * @template {keyof Events & string} K
     * @param {K} type
     * @param {Events[K]} event
     * @returns {void}
     */
    emit<K extends keyof Events & string>(type: K, event: Events[K]): void;
}
