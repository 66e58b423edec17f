/**
 * A config error that names where it is: a file line, or a field path. Its own module so that
 * main.ts can recognise one without loading the config parser (and YAML) for every command.
 */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}
