import { describe, expect, it } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs, serverOverrides, UsageError } from "../src/cli/args.ts";
import { ConfigError } from "../src/config/error.ts";
import { loadConfig } from "../src/config/load.ts";
import { workersSetting } from "../src/config/workers.ts";
import { availableCpus, countCpuList, readCpuLimitFiles } from "../src/server/workers/cpus.ts";

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

  /** A host's /proc/self and /sys/fs/cgroup files under a directory of their own. */
  function host(files: Record<string, string>): string {
    const root = mkdtempSync(join(tmpdir(), "kedge-cpus-"));
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), content);
    }
    return root;
  }

  it("finds the files of a cgroup v2 host, v1 host and hybrid host where the kernel puts them", () => {
    const v2 = host({
      "proc/self/status": status("0-15"),
      "proc/self/cgroup": "0::/kubepods.slice/pod1.slice/cri-abc.scope\n",
      "sys/fs/cgroup/kubepods.slice/pod1.slice/cri-abc.scope/cpu.max": "max 100000\n",
      "sys/fs/cgroup/kubepods.slice/pod1.slice/cpu.max": "300000 100000\n",
      "sys/fs/cgroup/kubepods.slice/cpu.max": "max 100000\n",
    });
    expect(availableCpus(readCpuLimitFiles(16, v2))).toBe(3);
    // In a container's cgroup namespace its own cgroup is "/", the mount's root.
    const namespaced = host({ "proc/self/status": status("0-15"), "proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "200000 100000\n" });
    expect(availableCpus(readCpuLimitFiles(16, namespaced))).toBe(2);
    /** A v1 host: the process's cgroup lines, and a CFS quota in the cpu controller's directory for it. */
    const v1Host = (cgroup: string, dir: string, quotaUs: number) =>
      host({ "proc/self/status": status("0-15"), "proc/self/cgroup": cgroup, [`${dir}/cpu.cfs_quota_us`]: `${quotaUs}\n`, [`${dir}/cpu.cfs_period_us`]: "100000\n" });
    const v1 = v1Host("12:memory:/kubepods/pod1/abc\n4:cpu,cpuacct:/kubepods/pod1/abc\n", "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/abc", 150000);
    expect(availableCpus(readCpuLimitFiles(16, v1))).toBe(2);
    // A v2 root listed, but its controllers in v1: the v1 quota counts.
    const hybrid = v1Host("4:cpu,cpuacct:/job\n0::/job\n", "sys/fs/cgroup/cpu/job", 400000);
    expect(availableCpus(readCpuLimitFiles(16, hybrid))).toBe(4);
    // No cgroup limit: the affinity mask (taskset, a CPU manager's exclusive CPUs).
    expect(availableCpus(readCpuLimitFiles(16, host({ "proc/self/status": status("2,5"), "proc/self/cgroup": "0::/\n" })))).toBe(2);
  });

  it("is at least 1", () => {
    expect(availableCpus({ onlineCpus: 4, status: status("0-3"), cpuMax: ["10000 100000"] })).toBe(1);
    expect(availableCpus({ onlineCpus: 0 })).toBe(1);
    expect(availableCpus({ onlineCpus: 4, status: "Name:\tkedge\n" })).toBe(4);
  });
});
