// A tiny event emitter that behaves the same in browsers and Node (no
// EventEmitter/EventTarget quirks: no throw on unhandled 'error', plain objects
// as payloads), plus async iteration over a chosen set of event types.

/**
 * Minimal typed event emitter shared by the client and the microphone capture.
 * @template {object} [Events=Record<string, unknown>]
 */
export class Emitter {
  constructor() {
    /** @private @type {Map<string, Set<(event: any) => void>>} */
    this._listeners = new Map();
  }

  /**
   * Subscribe; returns a function that unsubscribes. Type '*' receives every event.
   * @template {keyof Events & string} K
   * @param {K | '*'} type
   * @param {(event: Events[K]) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  /**
   * @template {keyof Events & string} K
   * @param {K | '*'} type
   * @param {(event: Events[K]) => void} listener
   * @returns {void}
   */
  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /**
   * Resolves with the next event of `type`.
   * @template {keyof Events & string} K
   * @param {K} type
   * @returns {Promise<Events[K]>}
   */
  once(type) {
    return new Promise((resolve) => {
      const off = this.on(type, (event) => {
        off();
        resolve(event);
      });
    });
  }

  /**
   * @template {keyof Events & string} K
   * @param {K} type
   * @param {Events[K]} event
   * @returns {void}
   */
  emit(type, event) {
    for (const set of [this._listeners.get(type), this._listeners.get('*')]) {
      if (!set) continue;
      for (const listener of [...set]) {
        try {
          listener(event);
        } catch (e) {
          // A throwing listener must not break the connection's bookkeeping.
          queueMicrotask(() => {
            throw e;
          });
        }
      }
    }
  }
}

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
export function iterateEvents(emitter, types, endType, alreadyEnded = false) {
  /** @type {T[]} */
  const queue = [];
  /** @type {((result: IteratorResult<T>) => void) | null} */
  let waiting = null;
  let done = alreadyEnded;
  const onEvent = (event) => {
    if (done) return;
    if (event.type === endType) {
      done = true;
      off();
    }
    if (waiting) {
      const w = waiting;
      waiting = null;
      w({ value: event, done: false });
    } else queue.push(event);
  };
  const offs = types.map((type) => emitter.on(type, onEvent));
  const off = () => offs.forEach((f) => f());
  if (done) off();
  return {
    next() {
      if (queue.length) return Promise.resolve({ value: queue.shift(), done: false });
      if (done) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve) => (waiting = resolve));
    },
    return() {
      done = true;
      off();
      queue.length = 0;
      if (waiting) waiting({ value: undefined, done: true });
      waiting = null;
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
