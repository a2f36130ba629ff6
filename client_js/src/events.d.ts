/** Minimal typed event emitter shared by the client and the microphone capture. */
export class Emitter<Events extends object = Record<string, unknown>> {
  /** Subscribe; returns a function that unsubscribes. */
  on<K extends keyof Events & string>(type: K, listener: (event: Events[K]) => void): () => void;
  /** Every event, whatever its type. */
  on(type: '*', listener: (event: Events[keyof Events]) => void): () => void;
  off<K extends keyof Events & string>(type: K, listener: (event: Events[K]) => void): void;
  /** Resolves with the next event of `type`. */
  once<K extends keyof Events & string>(type: K): Promise<Events[K]>;
  emit<K extends keyof Events & string>(type: K, event: Events[K]): void;
}

export function iterateEvents<T extends { type: string }>(
  emitter: Emitter<any>,
  types: readonly string[],
  endType: string,
  alreadyEnded?: boolean,
): AsyncIterableIterator<T>;
