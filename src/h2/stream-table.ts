/**
 * One connection's open streams by id: an open-addressed table on two arrays, in place of a Map.
 *
 * Why not a Map: JavaScriptCore's Map keeps what was deleted from it reachable from the Map's
 * storage until a full collection. A connection lives long enough to be in the old generation,
 * so every stream it ever held (and all a stream points at: its request, its exchange, its
 * backend call) survived the young-generation collections, and each of them scheduled a full
 * one. Measured on gRPC unary load through one worker (BUN_JSC_logGC=1): 29 of 64 collections
 * full, young collections freeing 9 of 33 MB. Here a deleted slot holds nothing.
 *
 * Stream ids are positive 31-bit integers (0 marks an empty slot). An id's home slot is its
 * Fibonacci hash: the client picks the ids, and consecutive odd ones or ones a power of two apart
 * spread alike. Linear probing, deletion by shifting the rest of the run back (no tombstones), at
 * most half full: a run stays short, and the peer's MAX_CONCURRENT_STREAMS bounds the table.
 */
export class StreamTable<S> {
  private ids = new Int32Array(16);
  private slots: (S | undefined)[] = new Array<S | undefined>(16).fill(undefined);
  private mask = 15;
  private shift = 28;
  size = 0;

  private home(id: number): number {
    return Math.imul(id, 0x9e3779b1) >>> this.shift;
  }

  get(id: number): S | undefined {
    const ids = this.ids;
    const mask = this.mask;
    for (let i = this.home(id); ; i = (i + 1) & mask) {
      const k = ids[i];
      if (k === id) return this.slots[i];
      if (k === 0) return undefined;
    }
  }

  set(id: number, stream: S): void {
    if ((this.size + 1) * 2 > this.ids.length) this.grow();
    const ids = this.ids;
    const mask = this.mask;
    let i = this.home(id);
    while (ids[i] !== 0 && ids[i] !== id) i = (i + 1) & mask;
    if (ids[i] === 0) this.size++;
    ids[i] = id;
    this.slots[i] = stream;
  }

  delete(id: number): boolean {
    const ids = this.ids;
    const slots = this.slots;
    const mask = this.mask;
    let i = this.home(id);
    while (ids[i] !== id) {
      if (ids[i] === 0) return false;
      i = (i + 1) & mask;
    }
    this.size--;
    // Each later entry of the run moves back into the hole unless its home slot lies after the
    // hole (cyclically, in (hole, j]): then a search for it never passed the hole.
    for (let j = (i + 1) & mask; ids[j] !== 0; j = (j + 1) & mask) {
      const home = this.home(ids[j]);
      if (i <= j ? i < home && home <= j : i < home || home <= j) continue;
      ids[i] = ids[j];
      slots[i] = slots[j];
      i = j;
    }
    ids[i] = 0;
    slots[i] = undefined;
    return true;
  }

  /** The streams, oldest (lowest id) first, as a new array: changing the table while walking it is safe. */
  values(): S[] {
    const order: number[] = [];
    for (let i = 0; i < this.ids.length; i++) if (this.ids[i] !== 0) order.push(i);
    order.sort((a, b) => this.ids[a] - this.ids[b]);
    return order.map((i) => this.slots[i] as S);
  }

  private grow(): void {
    const ids = this.ids;
    const slots = this.slots;
    this.ids = new Int32Array(ids.length * 2);
    this.slots = new Array<S | undefined>(ids.length * 2).fill(undefined);
    this.mask = ids.length * 2 - 1;
    this.shift--;
    this.size = 0;
    for (let i = 0; i < ids.length; i++) if (ids[i] !== 0) this.set(ids[i], slots[i] as S);
  }
}
