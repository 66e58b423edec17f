import { describe, expect, it } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { RateLimit_Key, RateLimitSchema } from "../src/gen/kedge/config/v1/rate_limit_pb.ts";
import { addressKey } from "../src/ratelimit/address-key.ts";
import { RateLimiter } from "../src/ratelimit/rate-limits.ts";

// Which bucket a client address (always the TCP peer's, as the kernel wrote it) counts against:
// IPv4 by address, IPv6 by its /64.

describe("client address keys", () => {
  it("keeps IPv4 addresses whole, and IPv4-mapped IPv6 as their IPv4 address", () => {
    expect(addressKey("10.1.2.3")).toBe("10.1.2.3");
    expect(addressKey("::ffff:10.1.2.3")).toBe("10.1.2.3");
    expect(addressKey("::FFFF:10.1.2.3")).toBe("10.1.2.3");
  });

  it("keys IPv6 by /64, however the address is written", () => {
    const key = "2001:db8:1:2::/64";
    for (const a of ["2001:db8:1:2::1", "2001:0db8:0001:0002:ffff:eeee:dddd:cccc", "2001:DB8:1:2:0:0:0:9", "2001:db8:1:2::a%eth0"]) {
      expect(addressKey(a)).toBe(key);
    }
    expect(addressKey("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
    expect(addressKey("fe80::1")).toBe("fe80:0:0:0::/64");
    // "::" in the middle of the first four groups, and a trailing dotted quad.
    expect(addressKey("1:2::3:4:5:6:7")).toBe("1:2:0:3::/64");
    expect(addressKey("64:ff9b::192.0.2.1")).toBe("64:ff9b:0:0::/64");
  });

  it("leaves what is not an address as it is (its own bucket)", () => {
    for (const a of ["", "not:an:address", "1:2:3:4:5:6:7:8:9", "1::2::3"]) expect(addressKey(a)).toBe(a);
  });
});

describe("a CLIENT_ADDRESS limit", () => {
  const limiter = (key: RateLimit_Key) => new RateLimiter(create(RateLimitSchema, { requestsPerSecond: 0.001, burst: 1, key }), "route");

  it("gives every address of one IPv6 /64 one bucket, and another /64 its own", () => {
    const byAddress = limiter(RateLimit_Key.CLIENT_ADDRESS);
    expect(byAddress.take(undefined, null, "2001:db8:1:2::1", "r", 0)).toBe(0);
    // A new address in the same /64 does not get a fresh bucket.
    expect(byAddress.take(undefined, null, "2001:db8:1:2::2", "r", 0)).toBeGreaterThan(0);
    expect(byAddress.take(undefined, null, "2001:db8:1:2:abcd:1234:5678:9abc", "r", 0)).toBeGreaterThan(0);
    expect(byAddress.take(undefined, null, "2001:db8:1:3::1", "r", 0)).toBe(0);
    // IPv4 clients still one bucket each.
    expect(byAddress.take(undefined, null, "10.0.0.1", "r", 0)).toBe(0);
    expect(byAddress.take(undefined, null, "10.0.0.2", "r", 0)).toBe(0);
  });

  it("keys anonymous callers of an IDENTITY limit by /64 too", () => {
    const byIdentity = limiter(RateLimit_Key.IDENTITY);
    expect(byIdentity.take(undefined, null, "2001:db8::1", "r", 0)).toBe(0);
    expect(byIdentity.take(undefined, null, "2001:db8::2", "r", 0)).toBeGreaterThan(0);
  });
});
