import { join } from "node:path";

/**
 * kedge Go's e2e configs, copied byte for byte from ../shared/reference/kedge-go-configs so the
 * suite runs wherever the repo is cloned; test/reference-sync.test.ts checks the copy is current.
 */
export const referenceConfigs = join(import.meta.dir, "../fixtures/kedge-go-configs");
export const sharedReference = join(import.meta.dir, "../../../shared/reference/kedge-go-configs");
