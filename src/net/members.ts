/** An object that belongs to at most one Members set: its slot there, or -1 (start it at -1). */
export interface Member {
  memberSlot: number;
}

/**
 * The open connections of a listener or a pool: an array in which each member knows its slot, so
 * add and delete are O(1) with no hash table. JavaScriptCore's Set, like its Map (h2/stream-table.ts),
 * keeps deleted entries reachable until a full collection: under connection churn every closed
 * connection stayed in the heap until one (HTTP/1.1 with `Connection: close`: 7 full collections
 * of 49 in 6 s, 1 of 74 with this; bench/README.md). A delete moves the last member into the
 * freed slot, so the order is not kept.
 */
export class Members<T extends Member> {
  private readonly items: Array<T | undefined> = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(x: T): boolean {
    const i = x.memberSlot;
    return i >= 0 && i < this.count && this.items[i] === x;
  }

  add(x: T): void {
    if (this.has(x)) return;
    x.memberSlot = this.count;
    this.items[this.count++] = x;
  }

  delete(x: T): boolean {
    if (!this.has(x)) return false;
    const i = x.memberSlot;
    const last = this.items[--this.count]!;
    this.items[i] = last;
    last.memberSlot = i;
    this.items[this.count] = undefined; // nothing deleted stays reachable from here
    x.memberSlot = -1;
    return true;
  }

  /**
   * The members now, in an array of their own: what a walk over it adds or deletes does not move
   * it. Check `has` to skip one deleted since.
   */
  snapshot(): T[] {
    return this.items.slice(0, this.count) as T[];
  }
}
