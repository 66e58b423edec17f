import { readFileSync } from "node:fs";

/** What `workers: auto` reads, as file contents (undefined: the file is absent). */
export interface CpuLimitFiles {
  /** /proc/self/status: its Cpus_allowed_list line is the affinity mask (sched_getaffinity). */
  status?: string;
  /** cgroup v2 cpu.max of this process's cgroup and of each ancestor: "max 100000" or "200000 100000". */
  cpuMax?: readonly string[];
  /** cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us (quota -1: no limit). */
  cfsQuotaUs?: string;
  cfsPeriodUs?: string;
  /** The machine's CPU count, when nothing narrower is known. */
  onlineCpus: number;
}

/** Counts the CPUs of a list such as "0-3,8,10-11". */
export function countCpuList(list: string): number {
  let count = 0;
  for (const part of list.trim().split(",")) {
    if (part === "") continue;
    const [from, to] = part.split("-").map(Number);
    if (Number.isNaN(from)) continue;
    count += to === undefined ? 1 : Math.max(0, to - from + 1);
  }
  return count;
}

/** A quota over its period, rounded up: a pod limited to 1.5 CPUs gets 2 workers. */
function quotaCpus(quota: number, period: number): number | undefined {
  if (!(quota > 0) || !(period > 0)) return undefined;
  return Math.ceil(quota / period);
}

/**
 * The CPUs this process may use: the smaller of its affinity mask and its cgroup CPU quota
 * (rounded up), at least 1. A container's CPU limit is a quota, not a mask, so the mask alone
 * would size a pod limited to 2 CPUs on a 64-core node at 64 workers.
 */
export function availableCpus(files: CpuLimitFiles): number {
  let cpus = files.onlineCpus;
  const allowed = /^Cpus_allowed_list:\s*(\S+)\s*$/m.exec(files.status ?? "");
  if (allowed) {
    const n = countCpuList(allowed[1]);
    if (n > 0) cpus = Math.min(cpus, n);
  }
  for (const line of files.cpuMax ?? []) {
    const [quota, period] = line.trim().split(/\s+/);
    const n = quota === "max" ? undefined : quotaCpus(Number(quota), Number(period));
    if (n !== undefined) cpus = Math.min(cpus, n);
  }
  if (files.cfsQuotaUs !== undefined && files.cfsPeriodUs !== undefined) {
    const n = quotaCpus(Number(files.cfsQuotaUs.trim()), Number(files.cfsPeriodUs.trim()));
    if (n !== undefined) cpus = Math.min(cpus, n);
  }
  return Math.max(1, cpus);
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return undefined;
  }
}

/** The cgroup directory and its ancestors up to the mount point, deepest first. */
function cgroupDirs(mount: string, path: string): string[] {
  const dirs: string[] = [];
  const parts = path.split("/").filter(Boolean);
  for (let i = parts.length; i >= 0; i--) dirs.push([mount, ...parts.slice(0, i)].join("/"));
  return dirs;
}

/**
 * Reads this process's limits from /proc and /sys/fs/cgroup (cgroup v2, else v1); `root` is where
 * those trees are (tests lay out a host's files under a directory).
 */
export function readCpuLimitFiles(onlineCpus: number, root = ""): CpuLimitFiles {
  const files: CpuLimitFiles = { status: read(`${root}/proc/self/status`), onlineCpus };
  const cgroups = read(`${root}/proc/self/cgroup`) ?? "";
  const v2 = /^0::(\S*)$/m.exec(cgroups);
  if (v2) {
    // In a container the cgroup namespace makes the own cgroup the mount's root.
    const mount = `${root}/sys/fs/cgroup`;
    const cpuMax = [...cgroupDirs(mount, v2[1]), mount].map((d) => read(`${d}/cpu.max`)).filter((c): c is string => c !== undefined);
    // A hybrid host lists a v2 root whose controllers live in v1: fall through to v1 then.
    if (cpuMax.length > 0) return { ...files, cpuMax };
  }
  const v1 = /^\d+:[^:]*\bcpu\b[^:]*:(\S*)$/m.exec(cgroups);
  for (const mount of [`${root}/sys/fs/cgroup/cpu,cpuacct`, `${root}/sys/fs/cgroup/cpu`]) {
    for (const dir of [...cgroupDirs(mount, v1?.[1] ?? "").slice(0, 1), mount]) {
      const quota = read(`${dir}/cpu.cfs_quota_us`);
      const period = read(`${dir}/cpu.cfs_period_us`);
      if (quota !== undefined && period !== undefined) return { ...files, cfsQuotaUs: quota, cfsPeriodUs: period };
    }
  }
  return files;
}
