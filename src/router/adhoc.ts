import type { AdhocRule } from "../gen/kedge/config/v1/routes_pb.js";
import { KedgeError } from "../errors.js";
import { replaceFirst } from "./expand.js";
import { compileDnsNameMatcher } from "./match.js";

/** Where an adhoc rule sends a request: a host to resolve and a port to dial. */
export interface AdhocTarget {
  readonly ruleIndex: number;
  readonly host: string;
  readonly port: number;
}

export interface AdhocTable {
  /** undefined when no rule's name matcher matches; throws when a rule matches but refuses the port. */
  match(host: string, port: number | undefined): AdhocTarget | undefined;
}

export function compileAdhocRules(rules: readonly AdhocRule[]): AdhocTable {
  const compiled = rules.map((rule, ruleIndex) => {
    const nameMatches = compileDnsNameMatcher(rule.dnsNameMatcher);
    const defaultPort = rule.port?.default || 80;
    const allowed = new Set(rule.port?.allowed ?? []);
    const ranges = rule.port?.allowedRanges ?? [];
    const explicit = allowed.size > 0 || ranges.length > 0;
    const replace = rule.dnsNameReplace?.pattern ? { re: new RegExp(rule.dnsNameReplace.pattern), to: rule.dnsNameReplace.substitution } : undefined;
    const portAllowed = (p: number) =>
      explicit ? allowed.has(p) || ranges.some((r) => p >= r.from && p <= r.to) : p === defaultPort;
    return { ruleIndex, nameMatches, defaultPort, portAllowed, replace };
  });
  return {
    match(host, port) {
      for (const rule of compiled) {
        if (!rule.nameMatches(host)) continue;
        const target = port ?? rule.defaultPort;
        if (!rule.portAllowed(target)) {
          throw new KedgeError("adhoc-port-not-allowed", 400, `adhoc: port ${target} is not allowed`);
        }
        const dialHost = rule.replace ? replaceFirst(host, rule.replace.re, rule.replace.to) : host;
        return { ruleIndex: rule.ruleIndex, host: dialHost, port: target };
      }
      return undefined;
    },
  };
}
