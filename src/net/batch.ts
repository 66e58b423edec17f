/**
 * Items gathered while the event loop's turn goes on, then handled together, in order. Handling
 * swaps in a spare list rather than making a new one: these batches fill and empty every turn,
 * and an array per turn was most of what a gRPC call still allocated in arrays (bench/README.md).
 */
export class Batch<T> {
  private items: T[] = [];
  private spare: T[] = [];

  get size(): number {
    return this.items.length;
  }

  /** Adds one item; true when it is the batch's first (the caller schedules the handling then). */
  add(item: T): boolean {
    return this.items.push(item) === 1;
  }

  /** Hands every item gathered so far to `each` (a function made once); items added meanwhile wait for the next drain. */
  drain(each: (item: T) => void): void {
    const items = this.items;
    this.items = this.spare;
    try {
      for (let i = 0; i < items.length; i++) each(items[i]);
    } finally {
      items.length = 0;
      this.spare = items;
    }
  }
}
