import pkg from "../package.json" with { type: "json" };

export const version = {
  kedge: pkg.version,
  runtime: `bun ${Bun.version}`,
};
