/** The sum of a family's series in an exposition, optionally only those whose labels contain `having`. */
export function seriesTotal(text: string, name: string, having = ""): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (having && !line.includes(having)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** `promtool check metrics` (Prometheus' own lint) on an exposition: its exit code and what it said. */
export async function promtool(text: string): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(["promtool", "check", "metrics"], { stdin: new Blob([text]), stdout: "pipe", stderr: "pipe" });
  const out = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
  return { code: await p.exited, out };
}
