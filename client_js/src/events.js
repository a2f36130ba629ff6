// A tiny event emitter that behaves the same in browsers and Node (no
// EventEmitter/EventTarget quirks: no throw on unhandled 'error', plain objects
// as payloads), plus async iteration over a chosen set of event types.

export class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  /** Subscribe; returns a function that unsubscribes. Type '*' receives every event. */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /** Resolves with the next event of `type`. */
  once(type) {
    return new Promise((resolve) => {
      const off = this.on(type, (event) => {
        off();
        resolve(event);
      });
    });
  }

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
 */
export function iterateEvents(emitter, types, endType, alreadyEnded = false) {
  const queue = [];
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
