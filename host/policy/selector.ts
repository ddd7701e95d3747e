/**
 * Label selectors as Kubernetes defines them (matchLabels + matchExpressions
 * with In, NotIn, Exists, DoesNotExist), with Cilium's label sources: a key
 * "k8s:app" matches only k8s labels, a bare "app" (or "any:app") every source.
 */
import { ANY_SOURCE, checkKey, checkValue, splitSourceKey, type LabelSet } from "../identity/labels.js";
import { array, describe, fail, fields, object, string } from "./validate.js";

export type Operator = "In" | "NotIn" | "Exists" | "DoesNotExist";
const OPERATORS: readonly Operator[] = ["In", "NotIn", "Exists", "DoesNotExist"];

export interface Requirement {
  source: string;
  key: string;
  operator: Operator;
  values: string[];
}

export class Selector {
  /** Canonical text: equal selectors have equal keys (used to cache what they select). */
  readonly key: string;

  constructor(readonly requirements: readonly Requirement[]) {
    this.key = requirements
      .map((r) => `${r.source}:${r.key} ${r.operator} (${[...r.values].sort().join(",")})`)
      .sort()
      .join("; ") || "{}";
  }

  static readonly all = new Selector([]);

  matches(labels: LabelSet): boolean {
    for (const r of this.requirements) {
      const values = labels.values(r.source, r.key);
      switch (r.operator) {
        case "In": if (!values.some((v) => r.values.includes(v))) return false; break;
        // As Kubernetes: NotIn also matches a label set without the key.
        case "NotIn": if (values.some((v) => r.values.includes(v))) return false; break;
        case "Exists": if (values.length === 0) return false; break;
        case "DoesNotExist": if (values.length !== 0) return false; break;
      }
    }
    return true;
  }

  and(...more: Requirement[]): Selector {
    return new Selector([...this.requirements, ...more]);
  }

  /** Whether some requirement is about `key` (any source): lets a namespaced rule leave an explicit namespace alone. */
  mentionsKey(key: string): boolean {
    return this.requirements.some((r) => r.key === key);
  }

  mentionsSource(source: string): boolean {
    return this.requirements.some((r) => r.source === source);
  }

  /** `{matchLabels: {...}, matchExpressions: [...]}` as Kubernetes writes it. */
  toJSON(): unknown {
    const matchLabels: Record<string, string> = {};
    const matchExpressions: unknown[] = [];
    for (const r of this.requirements) {
      const key = r.source === ANY_SOURCE ? r.key : `${r.source}:${r.key}`;
      if (r.operator === "In" && r.values.length === 1 && !(key in matchLabels)) matchLabels[key] = r.values[0]!;
      else matchExpressions.push(r.values.length ? { key, operator: r.operator, values: r.values } : { key, operator: r.operator });
    }
    return { ...(Object.keys(matchLabels).length ? { matchLabels } : {}), ...(matchExpressions.length ? { matchExpressions } : {}) };
  }

  toString(): string {
    return this.key;
  }
}

/** Parses and validates a selector document; `{}` selects everything. */
export function parseSelector(v: unknown, path: string): Selector {
  const o = fields(v, path, ["matchLabels", "matchExpressions"]);
  const reqs: Requirement[] = [];
  if (o.matchLabels !== undefined && o.matchLabels !== null) {
    const ml = object(o.matchLabels, `${path}.matchLabels`);
    for (const [k, value] of Object.entries(ml)) {
      const at = `${path}.matchLabels.${k}`;
      const { source, key } = selectorKey(k, at);
      const s = string(value, at);
      checkValue(s, at);
      reqs.push({ source, key, operator: "In", values: [s] });
    }
  }
  if (o.matchExpressions !== undefined && o.matchExpressions !== null) {
    array(o.matchExpressions, `${path}.matchExpressions`).forEach((e, i) => {
      const at = `${path}.matchExpressions[${i}]`;
      const x = fields(e, at, ["key", "operator", "values"]);
      const { source, key } = selectorKey(string(x.key, `${at}.key`), `${at}.key`);
      const operator = string(x.operator, `${at}.operator`) as Operator;
      if (!OPERATORS.includes(operator)) fail(`${at}.operator`, `expected one of ${OPERATORS.join(", ")}, got ${describe(x.operator)}`);
      const values = x.values === undefined || x.values === null ? [] : array(x.values, `${at}.values`).map((s, j) => {
        const str = string(s, `${at}.values[${j}]`);
        checkValue(str, `${at}.values[${j}]`);
        return str;
      });
      if ((operator === "In" || operator === "NotIn") && values.length === 0) fail(`${at}.values`, `must not be empty for operator ${operator}`);
      if ((operator === "Exists" || operator === "DoesNotExist") && values.length !== 0) fail(`${at}.values`, `must be empty for operator ${operator}`);
      reqs.push({ source, key, operator, values });
    });
  }
  return new Selector(reqs);
}

function selectorKey(text: string, path: string): { source: string; key: string } {
  const sk = splitSourceKey(text, ANY_SOURCE);
  checkKey(sk.key, path);
  return sk;
}
