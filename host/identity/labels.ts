/**
 * Labels as Cilium writes them: `source:key=value`. The source says where a
 * label came from (k8s, reserved, cidr, ...); a selector that names no source
 * matches a label of any source, as Cilium's "any" source does.
 */
import { InvalidInputError } from "../errors.js";

export interface Label {
  source: string;
  key: string;
  value: string;
}

/** Source given to endpoint labels written without one ("app=web" is "k8s:app=web"). */
export const DEFAULT_SOURCE = "k8s";
/** Source of a selector key written without one: matches labels of every source. */
export const ANY_SOURCE = "any";

const SOURCE = /^[a-z][a-z0-9-]*$/;
// Kubernetes label keys (optional DNS prefix + name) and values, plus what
// Cilium puts in keys of its own sources (cidr:10.0.0.0/8 and cidr:fd00::/8).
const KEY = /^[A-Za-z0-9]([A-Za-z0-9._\/:-]*[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$/;

/**
 * An immutable, sorted set of labels, at most one per (source, key). `id` is
 * its canonical text: equal sets have equal ids, so it keys identities.
 */
export class LabelSet {
  readonly labels: readonly Label[];
  readonly id: string;

  private constructor(labels: Label[]) {
    labels.sort((a, b) => cmp(a.source, b.source) || cmp(a.key, b.key));
    this.labels = labels;
    this.id = labels.map(formatLabel).join(",");
  }

  static of(labels: Label[]): LabelSet {
    const seen = new Map<string, Label>();
    for (const l of labels) {
      const k = `${l.source}:${l.key}`;
      const prev = seen.get(k);
      if (prev && prev.value !== l.value) {
        throw new InvalidInputError(`label ${k} given twice with different values ("${prev.value}", "${l.value}")`);
      }
      seen.set(k, { ...l });
    }
    return new LabelSet([...seen.values()]);
  }

  /** From `["k8s:app=web", "tier=db"]` or `{ app: "web", "k8s:tier": "db" }`; `path` names the input in errors. */
  static parse(input: unknown, path = "labels"): LabelSet {
    if (input instanceof LabelSet) return input;
    if (Array.isArray(input)) {
      return LabelSet.of(input.map((s, i) => {
        if (typeof s !== "string") throw new InvalidInputError(`${path}[${i}]: expected a string like "k8s:app=web", got ${JSON.stringify(s)}`);
        return parseLabel(s, `${path}[${i}]`);
      }));
    }
    if (typeof input === "string") {
      const parts = input.split(",").map((s) => s.trim()).filter((s) => s !== "");
      return LabelSet.of(parts.map((s) => parseLabel(s, path)));
    }
    if (typeof input === "object" && input !== null) {
      return LabelSet.of(Object.entries(input).map(([k, v]) => {
        if (typeof v !== "string") throw new InvalidInputError(`${path}.${k}: expected a string value, got ${JSON.stringify(v)}`);
        return parseLabel(`${k}=${v}`, `${path}.${k}`);
      }));
    }
    throw new InvalidInputError(`${path}: expected a list of "source:key=value" strings or a {key: value} object, got ${JSON.stringify(input)}`);
  }

  get(source: string, key: string): string | undefined {
    for (const l of this.labels) if (l.key === key && (source === ANY_SOURCE || l.source === source)) return l.value;
    return undefined;
  }

  has(source: string, key: string): boolean {
    return this.get(source, key) !== undefined;
  }

  /** All values a key has across the sources a selector key admits. */
  values(source: string, key: string): string[] {
    return this.labels.filter((l) => l.key === key && (source === ANY_SOURCE || l.source === source)).map((l) => l.value);
  }

  hasSource(source: string): boolean {
    return this.labels.some((l) => l.source === source);
  }

  toStrings(): string[] {
    return this.labels.map(formatLabel);
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function formatLabel(l: Label): string {
  return l.value === "" ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`;
}

/**
 * Splits a selector or label key "k8s:app" into source and key; no source
 * means `defaultSource`. Only a known-looking source prefix is split off so
 * that CIDR keys ("cidr:fd00::/8") keep their colons.
 */
export function splitSourceKey(text: string, defaultSource: string): { source: string; key: string } {
  const colon = text.indexOf(":");
  if (colon > 0 && SOURCE.test(text.slice(0, colon))) return { source: text.slice(0, colon), key: text.slice(colon + 1) };
  return { source: defaultSource, key: text };
}

export function checkKey(key: string, path: string): void {
  if (key.length === 0 || key.length > 317 || !KEY.test(key)) {
    throw new InvalidInputError(`${path}: invalid label key ${JSON.stringify(key)} (letters, digits, ".", "_", "-", "/"; starting and ending alphanumeric)`);
  }
}

export function checkValue(value: string, path: string): void {
  if (value.length > 63 || !VALUE.test(value)) {
    throw new InvalidInputError(`${path}: invalid label value ${JSON.stringify(value)} (at most 63 letters, digits, ".", "_", "-"; starting and ending alphanumeric)`);
  }
}

/** "k8s:app=web", "app=web" (source k8s), "reserved:host" (empty value). */
export function parseLabel(text: string, path = "label", defaultSource = DEFAULT_SOURCE): Label {
  const eq = text.indexOf("=");
  const head = eq < 0 ? text : text.slice(0, eq);
  const value = eq < 0 ? "" : text.slice(eq + 1);
  const { source, key } = splitSourceKey(head, defaultSource);
  if (source === ANY_SOURCE) throw new InvalidInputError(`${path}: "any" is a selector source, not a label source`);
  // Identities of these sources are made by the allocator, never claimed by an endpoint.
  if (source === "reserved" || source === "cidr") throw new InvalidInputError(`${path}: "${source}:" labels belong to identities membrane allocates itself`);
  checkKey(key, path);
  checkValue(value, path);
  return { source, key, value };
}
