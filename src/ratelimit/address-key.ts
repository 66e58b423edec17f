/**
 * The bucket a client address counts against. IPv4 clients (and IPv4-mapped IPv6 ones) by their
 * whole address; IPv6 clients by their /64, because a host is usually given a whole /64 (SLAAC,
 * privacy addresses, a cloud VM's prefix) and can pick a new address in it for every request: a
 * bucket per address would not limit it at all.
 */
export function addressKey(address: string): string {
  if (address.indexOf(":") < 0) return address;
  let a = address.toLowerCase();
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  if (a.startsWith("::ffff:") && a.indexOf(".") > 0) return a.slice(7);
  const groups = expand(a);
  return groups === undefined ? address : `${groups.slice(0, 4).join(":")}::/64`;
}

/** The eight groups of an IPv6 address without leading zeros, or undefined if it is not one. */
function expand(a: string): string[] | undefined {
  const gap = a.indexOf("::");
  const head = split(gap < 0 ? a : a.slice(0, gap));
  const tail = gap < 0 ? [] : split(a.slice(gap + 2));
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (gap < 0 ? missing !== 0 : missing < 1) return undefined;
  return [...head, ...Array<string>(gap < 0 ? 0 : missing).fill("0"), ...tail];
}

/** Groups separated by ":"; a trailing dotted IPv4 part counts as two. */
function split(part: string): string[] | undefined {
  if (part === "") return [];
  const out: string[] = [];
  for (const g of part.split(":")) {
    if (g.indexOf(".") >= 0) {
      const v4 = g.split(".").map(Number);
      if (v4.length !== 4 || v4.some((n) => !(n >= 0 && n <= 255))) return undefined;
      out.push(((v4[0]! << 8) | v4[1]!).toString(16), ((v4[2]! << 8) | v4[3]!).toString(16));
    } else {
      if (!/^[0-9a-f]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16).toString(16));
    }
  }
  return out;
}
