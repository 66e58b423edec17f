type HeldSignal = "SIGHUP" | "SIGUSR1";

/**
 * SIGHUP and SIGUSR1 while kedge starts. Their default action ends the process, and kedge's
 * handlers exist only once it serves: a reload sent while a pod starts (a config reloader,
 * `pkill -HUP kedge` across a node) would kill it, or a supervisor halfway through starting its
 * workers. From the start they are held, and handed over once kedge serves: a held SIGHUP reloads
 * once (the files may have changed since they were read), a held SIGUSR1 reopens the log files.
 */
export function holdStartSignals(): (handlers: Record<HeldSignal, () => void>) => void {
  const held = new Set<HeldSignal>();
  const hold: Record<HeldSignal, () => void> = { SIGHUP: () => held.add("SIGHUP"), SIGUSR1: () => held.add("SIGUSR1") };
  for (const signal of ["SIGHUP", "SIGUSR1"] as const) process.on(signal, hold[signal]);
  return (handlers) => {
    for (const signal of ["SIGHUP", "SIGUSR1"] as const) {
      process.on(signal, handlers[signal]);
      process.off(signal, hold[signal]);
      if (held.has(signal)) handlers[signal]();
    }
  };
}
