// Label sets and Kubernetes selectors with Cilium's label sources.
import { describe, expect, test } from "vitest";
import { LabelSet } from "../../host/identity/labels.js";
import { parseSelector } from "../../host/policy/selector.js";

const web = LabelSet.parse(["k8s:app=web", "k8s:tier=front", "container:debug=true"]);

describe("label sets", () => {
  test("strings, lists and objects give the same canonical set; missing source is k8s", () => {
    const a = LabelSet.parse({ tier: "front", app: "web", "container:debug": "true" });
    const b = LabelSet.parse("app=web, container:debug=true,k8s:tier=front");
    expect(a.id).toBe(web.id);
    expect(b.id).toBe(web.id);
    expect(web.toStrings()).toEqual(["container:debug=true", "k8s:app=web", "k8s:tier=front"]);
  });

  test.each([
    [["app=web", "k8s:app=db"], "label k8s:app given twice"],
    [["reserved:host"], "belong to identities membrane allocates"],
    [["app=-bad"], "invalid label value"],
    [["=x"], "invalid label key"],
    [[3], "labels[0]: expected a string"],
  ])("%j is refused", (input, message) => {
    expect(() => LabelSet.parse(input)).toThrow(message);
  });
});

describe("selectors", () => {
  const sel = (v: unknown) => parseSelector(v, "sel");
  test.each<[unknown, boolean]>([
    [{}, true],
    [{ matchLabels: { app: "web" } }, true],
    [{ matchLabels: { "k8s:app": "web" } }, true],
    [{ matchLabels: { "container:app": "web" } }, false],
    [{ matchLabels: { "any:debug": "true" } }, true],
    [{ matchLabels: { app: "web", tier: "back" } }, false],
    [{ matchExpressions: [{ key: "app", operator: "In", values: ["db", "web"] }] }, true],
    [{ matchExpressions: [{ key: "app", operator: "In", values: ["db"] }] }, false],
    [{ matchExpressions: [{ key: "app", operator: "NotIn", values: ["db"] }] }, true],
    [{ matchExpressions: [{ key: "app", operator: "NotIn", values: ["web"] }] }, false],
    [{ matchExpressions: [{ key: "missing", operator: "NotIn", values: ["x"] }] }, true],
    [{ matchExpressions: [{ key: "tier", operator: "Exists" }] }, true],
    [{ matchExpressions: [{ key: "missing", operator: "Exists" }] }, false],
    [{ matchExpressions: [{ key: "missing", operator: "DoesNotExist" }] }, true],
    [{ matchExpressions: [{ key: "k8s:debug", operator: "DoesNotExist" }] }, true],
    [{ matchExpressions: [{ key: "debug", operator: "DoesNotExist" }] }, false],
    [{ matchLabels: { app: "web" }, matchExpressions: [{ key: "tier", operator: "In", values: ["back"] }] }, false],
  ])("%j matches web: %s", (s, expected) => {
    expect(sel(s).matches(web)).toBe(expected);
  });

  test("equal selectors written differently have one key", () => {
    expect(sel({ matchLabels: { a: "1", b: "2" } }).key).toBe(sel({ matchExpressions: [{ key: "b", operator: "In", values: ["2"] }], matchLabels: { a: "1" } }).key);
  });

  test.each([
    [{ matchLabel: { app: "web" } }, "sel.matchLabel: unknown field"],
    [{ matchLabels: { app: 3 } }, "sel.matchLabels.app: expected a string"],
    [{ matchExpressions: [{ key: "app", operator: "in", values: ["x"] }] }, "sel.matchExpressions[0].operator: expected one of In, NotIn, Exists, DoesNotExist"],
    [{ matchExpressions: [{ key: "app", operator: "In" }] }, "sel.matchExpressions[0].values: must not be empty for operator In"],
    [{ matchExpressions: [{ key: "app", operator: "Exists", values: ["x"] }] }, "sel.matchExpressions[0].values: must be empty for operator Exists"],
    [{ matchExpressions: [{ key: "bad key", operator: "Exists" }] }, "sel.matchExpressions[0].key: invalid label key"],
    ["web", "sel: expected an object"],
  ])("%j is refused: %s", (s, message) => {
    expect(() => sel(s)).toThrow(message);
  });
});
