/**
 * A template's shape: the configuration that changes an endpoint program's
 * code, compiled in with -D flags (bpf/lib/shape.h, bpf/lib/endpoint.h) and
 * therefore part of the template key. Everything an endpoint has of its own
 * (id, identity, addresses, MAC, ifindex) is a load-time constant instead
 * (endpoint-values.ts) and never costs a compile.
 */
import { InvalidInputError } from "../../errors.js";

export interface TemplateShape {
  /** Service load-balancing stage compiled in (ENABLE_LB). */
  lb: boolean;
  /** SNAT stage compiled in (ENABLE_NAT). */
  nat: boolean;
  /** Policy stage compiled in (ENABLE_POLICY). */
  policy: boolean;
  /** The endpoint enforces ingress / egress policy (ENDPOINT_POLICY_ENFORCE). */
  enforceIngress: boolean;
  enforceEgress: boolean;
}

/** Every stage in and policy enforced both ways: what bpf/ compiles to with no -D flag at all. */
export const DEFAULT_SHAPE: Readonly<TemplateShape> = Object.freeze({ lb: true, nat: true, policy: true, enforceIngress: true, enforceEgress: true });

const KEYS = Object.keys(DEFAULT_SHAPE) as (keyof TemplateShape)[];

/** Fills defaults and checks every field; `what` names the source in messages. */
export function resolveShape(shape: Partial<TemplateShape> = {}, what = "template shape"): TemplateShape {
  if (typeof shape !== "object" || shape === null) throw new InvalidInputError(`${what}: expected an object`);
  for (const k of Object.keys(shape)) {
    if (!KEYS.includes(k as keyof TemplateShape)) throw new InvalidInputError(`${what}: unknown key ${k} (known: ${KEYS.join(", ")})`);
  }
  const out = { ...DEFAULT_SHAPE };
  for (const k of KEYS) {
    const v = shape[k];
    if (v === undefined) continue;
    if (typeof v !== "boolean") throw new InvalidInputError(`${what}: ${k}: expected true or false, got ${JSON.stringify(v)}`);
    out[k] = v;
  }
  return out;
}

/** The -D flags of a shape, in a fixed order (they enter the template key as written). */
export function shapeDefines(shape: TemplateShape): string[] {
  const enforce = (shape.enforceIngress ? 1 : 0) | (shape.enforceEgress ? 2 : 0); // enum endpoint_flags
  return [
    `-DENABLE_LB=${shape.lb ? 1 : 0}`,
    `-DENABLE_NAT=${shape.nat ? 1 : 0}`,
    `-DENABLE_POLICY=${shape.policy ? 1 : 0}`,
    `-DENDPOINT_POLICY_ENFORCE=${enforce}`,
  ];
}

/** "lb nat policy enforce=ingress,egress", for listings. */
export function describeShape(shape: TemplateShape): string {
  const stages = (["lb", "nat", "policy"] as const).filter((k) => shape[k]);
  const enforce = [shape.enforceIngress ? "ingress" : "", shape.enforceEgress ? "egress" : ""].filter(Boolean);
  return `${stages.join(" ") || "no stages"} enforce=${enforce.join(",") || "none"}`;
}
