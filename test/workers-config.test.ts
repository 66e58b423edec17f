import { describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, serverOverrides, UsageError } from "../src/cli/args.ts";
import { ConfigError } from "../src/config/error.ts";
import { loadConfig } from "../src/config/load.ts";
import { workersSetting } from "../src/config/workers.ts";
import { availableCpus, countCpuList } from "../src/server/workers/cpus.ts";

const dir = mkdtempSync(join(tmpdir(), "kedge-workers-config-"));

function load(name: string, text: string, serverFlags?: Record<string, unknown>) {
  const file = join(dir, name);
  writeFileSync(file, text);
  return loadConfig({ configFile: file, serverOverrides: serverFlags });
}

function problems(name: string, text: string): readonly string[] {
  try {
    load(name, text);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

const yaml = (workers: string) => `server:\n  bind_address: 127.0.0.1\n  http_port: 0\n  workers: ${workers}\n`;

describe("server.workers", () => {
  it("loads a number or auto from YAML and JSON, and is auto when absent", () => {
    expect(workersSetting(load("two.yaml", yaml("2")))).toBe(2);
    expect(workersSetting(load("auto.yaml", yaml("auto")))).toBe("auto");
    expect(workersSetting(load("three.json", JSON.stringify({ server: { bind_address: "127.0.0.1", workers: 3 } })))).toBe(3);
    expect(workersSetting(load("none.json", JSON.stringify({ server: { bind_address: "127.0.0.1", http_port: 0 } })))).toBe("auto");
  });

  it("refuses anything else with its field path", () => {
    expect(problems("zero.yaml", yaml("0"))).toEqual(['server.workers: must be "auto" or a whole number of at least 1, got 0']);
    expect(problems("half.yaml", yaml("1.5"))).toEqual(['server.workers: must be "auto" or a whole number of at least 1, got 1.5']);
    expect(problems("word.yaml", yaml("many"))).toEqual(['server.workers: must be "auto" or a whole number of at least 1, got "many"']);
    expect(problems("list.yaml", yaml("[2]"))).toEqual(['server.workers: must be "auto" or a whole number of at least 1, got list']);
  });

  it("takes --workers N|auto over the file", () => {
    const flags = (argv: string[]) => serverOverrides(parseArgs(argv).flags);
    expect(flags(["--workers", "4"])).toEqual({ workers: 4 });
    expect(flags(["--workers=auto"])).toEqual({ workers: "auto" });
    expect(workersSetting(load("flag.yaml", yaml("auto"), flags(["--workers", "1"])))).toBe(1);
    expect(() => flags(["--workers", "two"])).toThrow(UsageError);
  });
});

describe("workers: auto", () => {
  const status = (list: string) => `Name:\tkedge\nCpus_allowed:\tff\nCpus_allowed_list:\t${list}\nMems_allowed_list:\t0\n`;

  it("counts CPU lists", () => {
    expect(countCpuList("0")).toBe(1);
    expect(countCpuList("0-3")).toBe(4);
    expect(countCpuList("0-3,8,10-11\n")).toBe(7);
  });

  it("is the affinity mask when nothing else limits", () => {
    expect(availableCpus({ onlineCpus: 64, status: status("0-7") })).toBe(8);
    expect(availableCpus({ onlineCpus: 64, status: status("0-7"), cpuMax: ["max 100000\n"] })).toBe(8);
    expect(availableCpus({ onlineCpus: 64, status: status("0-7"), cfsQuotaUs: "-1\n", cfsPeriodUs: "100000\n" })).toBe(8);
  });

  it("honours a cgroup v2 quota, rounded up, the smallest along the cgroup's ancestors", () => {
    expect(availableCpus({ onlineCpus: 64, status: status("0-63"), cpuMax: ["200000 100000\n"] })).toBe(2);
    expect(availableCpus({ onlineCpus: 64, status: status("0-63"), cpuMax: ["150000 100000\n"] })).toBe(2);
    expect(availableCpus({ onlineCpus: 64, status: status("0-63"), cpuMax: ["max 100000", "300000 100000"] })).toBe(3);
    expect(availableCpus({ onlineCpus: 64, status: status("0,1"), cpuMax: ["400000 100000"] })).toBe(2);
  });

  it("honours a cgroup v1 CFS quota", () => {
    expect(availableCpus({ onlineCpus: 32, status: status("0-31"), cfsQuotaUs: "250000\n", cfsPeriodUs: "100000\n" })).toBe(3);
  });

  it("is at least 1", () => {
    expect(availableCpus({ onlineCpus: 4, status: status("0-3"), cpuMax: ["10000 100000"] })).toBe(1);
    expect(availableCpus({ onlineCpus: 0 })).toBe(1);
    expect(availableCpus({ onlineCpus: 4, status: "Name:\tkedge\n" })).toBe(4);
  });
});
