/**
 * Which two tasks a 2-CPU machine ran, moment by moment, from a scheduler trace: where a closed
 * loop of load generator, proxy and upstream leaves a CPU idle (bench/README.md, "Answers held to
 * the turn's end").
 *
 *   perf record -e sched:sched_switch,sched:sched_wakeup -a -o sched.data -- sleep 1   # during the load
 *   bun bench/sched-pairs.ts sched.data PROXY_PID UPSTREAM_PID
 *
 * Roles: K the proxy's main thread (its pid), U the upstream's, H h2load, I idle, O anything else.
 * Prints the share of time of each pair (KU: one CPU ran K, the other U), each role's run time and
 * how often it went to sleep.
 */
const [data, proxyArg, upstreamArg] = process.argv.slice(2);
const proxy = Number(proxyArg);
const upstream = Number(upstreamArg);
if (!data || !Number.isInteger(proxy) || !Number.isInteger(upstream)) {
  console.error("usage: bun bench/sched-pairs.ts PERF_DATA PROXY_PID UPSTREAM_PID");
  process.exit(2);
}

const script = Bun.spawnSync(["perf", "script", "-i", data], { stdout: "pipe", stderr: "ignore" });
if (script.exitCode !== 0) {
  console.error(`perf script -i ${data} failed`);
  process.exit(1);
}

const switchLine = /\[(\d+)\]\s+([\d.]+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)/;
const comms = new Map<number, string>();
const role = (pid: number): string => {
  if (pid === 0) return "I";
  if (pid === proxy) return "K";
  if (pid === upstream) return "U";
  return comms.get(pid) === "h2load" ? "H" : "O";
};

const running = new Map<number, number>(); // cpu → pid
const since = new Map<number, number>(); // cpu → when its task started
const pairs = new Map<string, number>();
const ran = new Map<string, number>();
const sleeps = new Map<string, number>();
const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
let last = NaN;

for (const line of script.stdout.toString().split("\n")) {
  const m = switchLine.exec(line);
  if (!m) continue;
  const cpu = Number(m[1]);
  const t = Number(m[2]);
  const prev = Number(m[4]);
  const next = Number(m[7]);
  comms.set(prev, m[3]);
  comms.set(next, m[6]);
  // The pair that ran until now: counted once both CPUs' tasks are known.
  if (running.size === 2 && Number.isFinite(last)) {
    add(pairs, [...running.values()].map(role).sort().join(""), t - last);
  }
  last = t;
  if (running.get(cpu) === prev && since.has(cpu)) add(ran, role(prev), t - since.get(cpu)!);
  if (m[5].startsWith("S") && prev !== 0) add(sleeps, role(prev), 1);
  running.set(cpu, next);
  since.set(cpu, t);
}

const total = [...pairs.values()].reduce((a, b) => a + b, 0);
if (total === 0) {
  console.error("no sched_switch events on two CPUs in the trace");
  process.exit(1);
}
const byShare = [...pairs.entries()].sort((a, b) => b[1] - a[1]);
console.log(`span ${total.toFixed(3)} s`);
console.log(`pairs: ${byShare.map(([k, v]) => `${k}=${((100 * v) / total).toFixed(1)}%`).join(" ")}`);
console.log(`ran ms: ${[...ran.entries()].map(([k, v]) => `${k}=${(1000 * v).toFixed(0)}`).join(" ")}`);
console.log(`sleeps: ${[...sleeps.entries()].map(([k, v]) => `${k}=${v}`).join(" ")}`);
