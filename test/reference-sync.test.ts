import { describe, expect, it } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { referenceConfigs, sharedReference } from "./helpers/reference.ts";

// The fixtures are a copy; where the shared reference is checked out next to the repo, they must match it.
// CI always has it beside the clone: there a missing one fails instead of skipping.
describe("kedge Go reference fixtures", () => {
  it.skipIf(!existsSync(sharedReference) && process.env.CI !== "true")("are identical to ../shared/reference", () => {
    for (const name of readdirSync(sharedReference)) {
      expect(readFileSync(join(referenceConfigs, name), "utf8")).toBe(readFileSync(join(sharedReference, name), "utf8"));
    }
    expect(readFileSync(join(referenceConfigs, "README.md"), "utf8")).toBe(readFileSync(join(sharedReference, "../README.md"), "utf8"));
  });
});
