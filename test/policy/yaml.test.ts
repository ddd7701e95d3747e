// Policy files in YAML: one or several documents, the same rules as JSON, errors naming the document and the field.
import { describe, expect, test } from "vitest";
import { parsePolicyText } from "../../host/policy/document.js";

const DB_YAML = `# the db may be reached from web on 5432
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: db
spec:
  endpointSelector:
    matchLabels: {app: db}
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: web
    toPorts:
    - ports:
      - port: "5432"
        protocol: TCP
`;
const DB_JSON = {
  apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "db" },
  spec: { endpointSelector: { matchLabels: { app: "db" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "web" } }], toPorts: [{ ports: [{ port: "5432", protocol: "TCP" }] }] }] },
};
const KNP_YAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
`;

describe("YAML policy files", () => {
  test("a YAML document means what the same JSON document means", () => {
    const [y] = parsePolicyText(DB_YAML, "db.yaml");
    const [j] = parsePolicyText(JSON.stringify(DB_JSON), "db.json");
    expect(y!.source).toEqual(DB_JSON);
    expect(y!.name).toBe("default/db");
    expect(y!.rules.map((r) => r.subject.key)).toEqual(j!.rules.map((r) => r.subject.key));
    expect(y!.rules.map((r) => r.sections.length)).toEqual([1]);
  });

  test("several documents, empty ones skipped, a List among them", () => {
    const list = `apiVersion: v1\nkind: List\nitems:\n- ${KNP_YAML.replace(/\n(?=.)/g, "\n  ").replace("deny-all", "deny-all-2")}`;
    const docs = parsePolicyText(`---\n${DB_YAML}---\n# nothing here\n---\n${KNP_YAML}---\n${list}`, "all.yaml");
    expect(docs.map((d) => `${d.kind} ${d.name}`)).toEqual(["CiliumNetworkPolicy default/db", "NetworkPolicy prod/deny-all", "NetworkPolicy prod/deny-all-2"]);
  });

  test("a field error names the document, the policy and the field path", () => {
    const bad = DB_YAML.replace('"5432"', '"70000"');
    expect(() => parsePolicyText(`${KNP_YAML}---\n${bad}`, "two.yaml")).toThrow(
      'two.yaml document 2: CiliumNetworkPolicy default/db: spec.ingress[0].toPorts[0].ports[0].port: must be 0..65535 (0: every port), got "70000"');
    // one document: the same message as JSON gives
    expect(() => parsePolicyText(bad, "one.yaml")).toThrow(/^CiliumNetworkPolicy default\/db: spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: must be 0\.\.65535/);
    expect(() => parsePolicyText(DB_YAML.replace("toPorts:", "toPort:"), "t.yaml")).toThrow("spec.ingress[0].toPort: unknown field");
  });

  test("YAML 1.2 core schema: unquoted yes/on stay strings, so they fail as strings would", () => {
    // YAML 1.1 would read `on` as true; 1.2 keeps the text, and the label value is checked as text
    const docs = parsePolicyText(DB_YAML.replace("app: web", "app: on"), "on.yaml");
    expect((docs[0]!.source as typeof DB_JSON).spec.ingress[0]!.fromEndpoints[0]!.matchLabels.app).toBe("on");
  });

  test.each<[string, string, RegExp | string]>([
    ["syntax", "spec: [\n", /^parse s\.yaml: Flow sequence .* at line 2, column 1/s],
    ["duplicate key", `${DB_YAML}kind: NetworkPolicy\n`, /parse s\.yaml: Map keys must be unique/],
    ["unknown tag", "apiVersion: !secret x\n", /parse s\.yaml: .*!secret/],
    ["error in the second document", `${DB_YAML}---\na: [\n`, /^parse s\.yaml document 2: /],
    ["nothing", "# only a comment\n", "parse s.yaml: no policy documents"],
    ["empty", "", "parse s.yaml: no policy documents"],
    ["a scalar", "hello\n", 'document: expected an object, got "hello"'],
    ["same name twice", `${DB_YAML}---\n${DB_YAML}`, "policy default/db appears twice in one import"],
  ])("refused: %s", (_what, text, message) => {
    expect(() => parsePolicyText(text, "s.yaml")).toThrow(message);
  });

  test("alias expansion is bounded", () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]", ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(", ")}]`)].join("\n");
    expect(() => parsePolicyText(bomb, "bomb.yaml")).toThrow(/parse bomb\.yaml: .*alias/i);
  });

  test("JSON stays JSON, with its own messages", () => {
    expect(() => parsePolicyText('{"kind": ', "p.json")).toThrow(/^parse p\.json: .*JSON/);
    expect(parsePolicyText(JSON.stringify([DB_JSON]), "p.json").map((d) => d.name)).toEqual(["default/db"]);
  });
});
