/**
 * The routing the agent owns (--route, --route-table, --route-rule). The
 * TUN device, and every route into it, vanish when the agent stops; so the
 * agent sets its routing up again at every start and takes away at stop
 * what it added:
 *
 *   --route CIDR          `ip route replace CIDR dev <tun> [table N]`, per prefix
 *   --route-table N       the routes go into table N instead of main
 *   --route-rule SEL      `ip rule add SEL lookup N` (policy routing into that
 *                         table, e.g. "iif lxc-pod1 pref 100"), for the family
 *                         of its addresses, or both without one
 *
 * Rules outlive the device, so they are what needs owning: one already there
 * at start (left by an agent that was killed) is taken over rather than
 * added twice, and every rule the agent manages is deleted at stop. Without
 * a forwarder the table is empty, and its traffic falls through to the
 * rules after it; an operator who wants it to fail closed adds an
 * `unreachable default` route of a high metric to the table, which the agent
 * never touches (host/demo/topology.ts does that).
 */
import { ip } from "../sys/netns/iproute2.js";
import { InvalidInputError } from "../errors.js";
import { parseIp } from "../packet/address.js";

export interface RoutingOptions {
  routes: string[];
  table?: number;
  rules?: RouteRule[];
}

export interface RouteRule {
  /** The selector as given (for messages) and as iproute2 arguments. */
  text: string;
  selector: string[];
  families: Array<4 | 6>;
}

/** Tables iproute2 reserves: unspec, default, main, local. */
const RESERVED_TABLES: Record<number, string> = { 0: "unspec", 253: "default", 254: "main", 255: "local" };

export function parseRouteTable(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n > 0xffffffff) throw new InvalidInputError(`--route-table: expected a table number 1..4294967295, got "${value}"`);
  if (RESERVED_TABLES[n]) throw new InvalidInputError(`--route-table: table ${n} is the kernel's "${RESERVED_TABLES[n]}" table; pick one of your own (e.g. 100)`);
  return n;
}

/** Selector keywords of `ip rule` (no actions: the agent adds "lookup <table>" itself). */
const SELECTORS = new Set(["from", "to", "tos", "dsfield", "fwmark", "iif", "oif", "pref", "priority", "preference", "uidrange", "ipproto", "sport", "dport"]);
const VALUE = /^[A-Za-z0-9_.:/\-]+$/;

export function parseRouteRule(text: string): RouteRule {
  const tokens = text.trim().split(/\s+/).filter(Boolean);
  if (!tokens.length) throw new InvalidInputError(`--route-rule: empty selector (e.g. "iif lxc-pod1 pref 100")`);
  const families = new Set<4 | 6>();
  for (let i = 0; i < tokens.length; i++) {
    const word = tokens[i];
    if (word === "not") continue;
    if (!SELECTORS.has(word)) {
      throw new InvalidInputError(`--route-rule "${text}": "${word}" is not a rule selector (allowed: not, ${[...SELECTORS].join(", ")}); the agent adds "lookup <--route-table>" itself`);
    }
    const value = tokens[++i];
    if (value === undefined || !VALUE.test(value)) throw new InvalidInputError(`--route-rule "${text}": ${word} needs a value`);
    if (word === "from" || word === "to") {
      if (value === "all") continue;
      const addr = value.split("/")[0];
      try {
        families.add(parseIp(addr).family);
      } catch (err) {
        throw new InvalidInputError(`--route-rule "${text}": ${word} ${value}: ${(err as Error).message}`);
      }
    }
  }
  if (families.size > 1) throw new InvalidInputError(`--route-rule "${text}": mixes IPv4 and IPv6 addresses`);
  return { text, selector: tokens, families: families.size ? [...families] : [4, 6] };
}

export class AgentRouting {
  #rulesAdded: Array<{ family: 4 | 6; args: string[] }> = [];

  constructor(private readonly opts: RoutingOptions, private readonly device: string) {
    AgentRouting.validate(opts);
  }

  /** The combinations the options must make, checked before anything is set up. */
  static validate(opts: RoutingOptions): void {
    if (opts.rules?.length && opts.table === undefined) throw new InvalidInputError("--route-rule needs --route-table: the table the rule sends traffic to");
  }

  private tableArgs(): string[] {
    return this.opts.table === undefined ? [] : ["table", String(this.opts.table)];
  }

  /** Brings the device up and installs routes and rules; on a failure, removes what it did and throws. */
  apply(): void {
    try {
      ip("link", "set", "dev", this.device, "up");
      for (const r of this.opts.routes) ip("route", "replace", r, "dev", this.device, ...this.tableArgs());
      for (const rule of this.opts.rules ?? []) {
        for (const family of rule.families) {
          const args = [...rule.selector, "lookup", String(this.opts.table)];
          // A rule left by an agent that was killed is taken over, not added a second time.
          if (!ip(`-${family}`, "rule", "show", ...args).trim()) ip(`-${family}`, "rule", "add", ...args);
          this.#rulesAdded.push({ family, args });
        }
      }
    } catch (err) {
      this.remove();
      throw err;
    }
  }

  /**
   * Deletes the rules (every copy) and the routes still there (the device
   * takes its routes along when it goes). Returns what could not be removed.
   */
  remove(): string[] {
    const problems: string[] = [];
    for (const { family, args } of this.#rulesAdded.splice(0).reverse()) {
      for (let i = 0; i < 16 && ip(`-${family}`, "rule", "show", ...args).trim(); i++) {
        try {
          ip(`-${family}`, "rule", "del", ...args);
        } catch (err) {
          problems.push(`rule ${args.join(" ")}: ${(err as Error).message}`);
          break;
        }
      }
    }
    for (const r of this.opts.routes) {
      try {
        if (ip("route", "show", r, "dev", this.device, ...this.tableArgs()).trim()) ip("route", "del", r, "dev", this.device, ...this.tableArgs());
      } catch {
        // The device is gone, and its routes with it.
      }
    }
    return problems;
  }

  describe(): string {
    const table = this.opts.table === undefined ? "" : ` in table ${this.opts.table}`;
    const routes = this.opts.routes.length ? `routes ${this.opts.routes.join(", ")}${table}` : "routes none";
    const rules = this.opts.rules?.length ? `, rules ${this.opts.rules.map((r) => `"${r.text}"`).join(", ")} -> table ${this.opts.table}` : "";
    return routes + rules;
  }
}
