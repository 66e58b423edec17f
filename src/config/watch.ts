import { watch, type FSWatcher } from "node:fs";
import { basename, dirname, resolve } from "node:path";

/**
 * Watches the directories, not the files: editors and Kubernetes ConfigMaps replace files by
 * rename, which a watch on the old inode never reports. Changes are debounced.
 */
export function watchConfigFiles(files: string[], onChange: () => void): FSWatcher[] {
  let timer: Timer | undefined;
  const names = new Set(files.map((f) => basename(f)));
  const dirs = new Set(files.map((f) => dirname(resolve(f))));
  return [...dirs].map((dir) =>
    watch(dir, (_event, name) => {
      if (name && !names.has(String(name)) && !String(name).startsWith("..")) return;
      clearTimeout(timer);
      timer = setTimeout(onChange, 200);
    }),
  );
}
