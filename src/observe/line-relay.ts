/**
 * Where relayed bytes go: process.stdout or process.stderr. write() returning false asks the relay
 * to wait for "drain", so a slow reader of kedge's stdout slows the workers' writes instead of
 * filling the supervisor's memory.
 */
export interface LineSink {
  write(chunk: Uint8Array): boolean;
  once(event: "drain", listener: () => void): unknown;
}

/** A line longer than this (a worker writing without newlines) goes out in pieces rather than waiting in memory. */
const maxPartialLine = 1 << 20;
const newline = new Uint8Array([10]);

/**
 * Copies a worker's output to the supervisor's, whole lines at a time: the supervisor is the only
 * writer of its stdout, so lines from several workers never interleave. Workers writing to an
 * inherited pipe themselves would tear lines: a write is atomic on a pipe only up to PIPE_BUF
 * (4096 bytes), and an access line (a long path, a batch of lines per turn) can be longer. A last
 * line left unfinished when the worker exits is ended with a newline so the next one starts whole.
 */
export async function relayLines(source: AsyncIterable<Uint8Array>, sink: LineSink): Promise<void> {
  let partial: Uint8Array[] = [];
  let partialBytes = 0;
  // The chunks of one line go out in one synchronous run: no other relay writes between them.
  const write = async (chunks: Uint8Array[]) => {
    let ok = true;
    for (const c of chunks) ok = sink.write(c) && ok;
    if (!ok) await new Promise<void>((resolve) => sink.once("drain", resolve));
  };
  for await (const chunk of source) {
    const end = chunk.lastIndexOf(10);
    if (end < 0) {
      partial.push(chunk);
      partialBytes += chunk.length;
      if (partialBytes >= maxPartialLine) {
        await write(partial);
        partial = [];
        partialBytes = 0;
      }
      continue;
    }
    const whole = partial;
    whole.push(end === chunk.length - 1 ? chunk : chunk.subarray(0, end + 1));
    partial = end === chunk.length - 1 ? [] : [chunk.slice(end + 1)];
    partialBytes = partial.length ? partial[0].length : 0;
    await write(whole);
  }
  if (partialBytes > 0) await write([...partial, newline]);
}
