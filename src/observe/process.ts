import { readdirSync, readFileSync } from "node:fs";
import type { ValueFamily } from "./metric-families.js";
import type { Metric } from "./prometheus.js";

/** USER_HZ: the unit of /proc's CPU times. 100 on every Linux architecture kedge ships for. */
const clockTicksPerSecond = 100;

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return undefined;
  }
}

const vmRss = /^VmRSS:\s+(\d+) kB$/m;
const vmSize = /^VmSize:\s+(\d+) kB$/m;

/** A "Name:   value kB" line of /proc/self/status, in bytes. */
function statusBytes(status: string, line: RegExp): number | undefined {
  const m = line.exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

let bootTimeSeconds: number | undefined;

function bootTime(): number | undefined {
  if (bootTimeSeconds === undefined) {
    const m = /^btime (\d+)$/m.exec(readProc("/proc/stat") ?? "");
    if (m) bootTimeSeconds = Number(m[1]);
  }
  return bootTimeSeconds;
}

interface ProcessSample {
  cpuSeconds: number;
  residentBytes: number;
  virtualBytes: number | undefined;
  startTimeSeconds: number;
  openFds: number | undefined;
  maxFds: number | undefined;
}

/** What /proc says of this process; the runtime's own numbers where there is no /proc (macOS). */
function sample(): ProcessSample {
  const stat = readProc("/proc/self/stat");
  const status = readProc("/proc/self/status");
  // Fields after the command name, which may itself hold spaces and parentheses (proc(5)).
  const fields = stat ? stat.slice(stat.lastIndexOf(")") + 2).split(" ") : undefined;
  const boot = bootTime();
  const cpu = process.cpuUsage();
  let openFds: number | undefined;
  try {
    openFds = readdirSync("/proc/self/fd").length;
  } catch {
    openFds = undefined;
  }
  const limit = /^Max open files\s+(\d+)/m.exec(readProc("/proc/self/limits") ?? "");
  return {
    // fields[0] is field 3 (state) of proc(5): utime is 14, stime 15, starttime 22.
    cpuSeconds: fields ? (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond : (cpu.user + cpu.system) / 1e6,
    residentBytes: (status ? statusBytes(status, vmRss) : undefined) ?? process.memoryUsage().rss,
    virtualBytes: status ? statusBytes(status, vmSize) : undefined,
    startTimeSeconds: fields && boot !== undefined ? boot + Number(fields[19]) / clockTicksPerSecond : Date.now() / 1000 - process.uptime(),
    openFds,
    maxFds: limit ? Number(limit[1]) : undefined,
  };
}

/** One process's value: with workers each process keeps its own series under a `worker` label. */
function family(name: string, type: "counter" | "gauge", help: string, value: number | undefined): ValueFamily[] {
  return value === undefined || Number.isNaN(value) ? [] : [{ name, help, type, merge: "worker", labelNames: [], series: [[[], value]] }];
}

/** The standard process_* metrics (the names every Prometheus client library uses), read once per scrape. */
export class ProcessMetrics implements Metric {
  families(): ValueFamily[] {
    const s = sample();
    return [
      ...family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", s.cpuSeconds),
      ...family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", s.residentBytes),
      ...family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", s.virtualBytes),
      ...family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", s.startTimeSeconds),
      ...family("process_open_fds", "gauge", "Number of open file descriptors.", s.openFds),
      ...family("process_max_fds", "gauge", "Maximum number of open file descriptors.", s.maxFds),
    ];
  }
}
