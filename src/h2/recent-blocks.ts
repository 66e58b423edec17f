import { copyOf } from "../net/bytes.js";

/** What decoding one header block gave: its fields and the facts HpackDecoder reports beside them. */
export interface DecodedBlock<Fields> {
  readonly fields: Fields;
  readonly listSize: number;
  readonly fieldCount: number;
  readonly pseudoAfterRegular: boolean;
}

/**
 * The last two header blocks one HPACK decoder decoded, by their octets. A peer sends the same
 * blocks again and again: a gRPC backend its response headers and its trailers, alternately, on
 * every call; a client the same request to one method. Decoding a block gives the same fields as
 * long as the dynamic table is as it was, so a block that changed no entry is kept with its
 * fields (frozen: every call that sends those octets shares them) and the next identical one,
 * at the same table version, is not decoded again: 5% of kedge's CPU per gRPC call
 * (bench/README.md). Blocks above `maxOctets` are not kept: the compare would cost more than
 * they are likely to repeat.
 */
export class RecentBlocks<Fields> {
  private static readonly maxOctets = 512;
  private octets0: Uint8Array | undefined = undefined;
  private octets1: Uint8Array | undefined = undefined;
  private decoded0: DecodedBlock<Fields> | undefined = undefined;
  private decoded1: DecodedBlock<Fields> | undefined = undefined;
  private version0 = -1;
  private version1 = -1;
  /** Which slot the next kept block replaces: the older one. */
  private next = 0;

  /** block[start, end)'s decoding, if it is one of the last two kept at this table version. */
  find(block: Uint8Array, start: number, end: number, tableVersion: number): DecodedBlock<Fields> | undefined {
    if (this.version0 === tableVersion && same(this.octets0, block, start, end)) return this.decoded0;
    if (this.version1 === tableVersion && same(this.octets1, block, start, end)) return this.decoded1;
    return undefined;
  }

  /** Keeps block[start, end)'s decoding, made at this table version (which it did not change). */
  keep(block: Uint8Array, start: number, end: number, tableVersion: number, decoded: DecodedBlock<Fields>): void {
    if (end - start > RecentBlocks.maxOctets) return;
    if (this.next === 0) {
      this.octets0 = copyOf(block, start, end);
      this.decoded0 = decoded;
      this.version0 = tableVersion;
    } else {
      this.octets1 = copyOf(block, start, end);
      this.decoded1 = decoded;
      this.version1 = tableVersion;
    }
    this.next ^= 1;
  }
}

function same(octets: Uint8Array | undefined, block: Uint8Array, start: number, end: number): boolean {
  if (octets === undefined || octets.length !== end - start) return false;
  for (let i = 0; i < octets.length; i++) if (octets[i] !== block[start + i]) return false;
  return true;
}
