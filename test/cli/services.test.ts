// Services in the state file: `membrane replay --config` DNATs to backends (Wasm and kernel),
// `membrane service list` lists them, bad input names the field and changes nothing.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cli } from "../support/run-cli.js";
import { LinkType, readCapture, writeCapture } from "../../host/pcap/index.js";
import { ethernet, packet4, packet6 } from "../../host/packet/build.js";
import { verifyChecksums } from "../../host/packet/checksum.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { BpfObject } from "../../host/bpf/object.js";
import { bpfObjectPath } from "../../host/tools/build-bpf.js";
import { resolveOptions } from "../../host/config.js";
import { kernelMapSizes, kernelMapTypes } from "../../host/kernel/maps.js";
import { KernelLbTables, configureKernelLb } from "../../host/kernel/lb-tables.js";
import { ServiceManager } from "../../host/lb/manager.js";
import { applyServices } from "../../host/state/services.js";
import { readLbListing } from "../../host/lb/listing.js";
import { Datapath } from "../../host/datapath.js";
import { describeIf, testIf } from "../support/describe-if.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-services-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const POD_MAC = "02:00:0a:00:01:0a", GW_MAC = "02:00:0a:00:01:01";
const CLIENT4 = "10.0.1.10", VIP4 = "10.96.0.10", BACKEND4 = "10.0.2.20";
const CLIENT6 = "fd00:1::a", VIP6 = "fd00:96::10", BACKEND6 = "fd00:2::20";
const out = (p: Uint8Array) => ethernet({ src: POD_MAC, dst: GW_MAC }, p);
const back = (p: Uint8Array) => ethernet({ src: GW_MAC, dst: POD_MAC }, p);
const payload = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

const STATE = {
  services: [
    { vip: VIP4, port: 80, proto: "tcp", backends: [{ addr: BACKEND4, port: 8080 }] },
    { vip: VIP6, port: 53, proto: "udp", algorithm: "maglev", backends: [{ addr: BACKEND6, port: 5353 }] },
  ],
  lb: { maglevM: 251, maglevRows: 4 },
};

/** A TCP handshake and a UDP exchange with the VIPs, the backends answering from their own addresses. */
function serviceCapture() {
  const tcp4 = (src: string, dst: string, sport: number, dport: number, flags: object) => packet4({ src, dst }).tcp({ sport, dport, flags, payload: payload(0) });
  const input = [
    out(tcp4(CLIENT4, VIP4, 40000, 80, { syn: true })),
    back(tcp4(BACKEND4, CLIENT4, 8080, 40000, { syn: true, ack: true })),
    out(tcp4(CLIENT4, VIP4, 40000, 80, { ack: true })),
    out(packet6({ src: CLIENT6, dst: VIP6 }).udp({ sport: 41000, dport: 53, payload: payload(33) })),
    back(packet6({ src: BACKEND6, dst: CLIENT6 }).udp({ sport: 5353, dport: 41000, payload: payload(49) })),
  ];
  // What the datapath must write: the client's packets DNATed to the backend, replies from the VIP.
  const expected = [
    out(tcp4(CLIENT4, BACKEND4, 40000, 8080, { syn: true })),
    back(tcp4(VIP4, CLIENT4, 80, 40000, { syn: true, ack: true })),
    out(tcp4(CLIENT4, BACKEND4, 40000, 8080, { ack: true })),
    out(packet6({ src: CLIENT6, dst: BACKEND6 }).udp({ sport: 41000, dport: 5353, payload: payload(33) })),
    back(packet6({ src: VIP6, dst: CLIENT6 }).udp({ sport: 53, dport: 41000, payload: payload(49) })),
  ];
  const epoch = 1_763_900_000n * 1_000_000_000n;
  const capture = writeCapture(LinkType.Ethernet, input.map((data, i) => ({ timestampNs: epoch + BigInt(i) * 1_000_000n, data })));
  return { capture, expected };
}

function files(state: unknown = STATE) {
  const cfg = join(dir, `state-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(cfg, JSON.stringify(state));
  const { capture, expected } = serviceCapture();
  const pcap = join(dir, "services.pcap");
  writeFileSync(pcap, capture);
  return { cfg, pcap, expected };
}

async function replayServices(engine: "wasm" | "bpf") {
  const { cfg, pcap, expected } = files();
  const outFile = join(dir, `out-${engine}.pcap`);
  const r = await cli("replay", pcap, "--config", cfg, "--engine", engine, "--json", "--out", outFile);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  const objects = r.lines.map((l) => JSON.parse(l));
  const written = readCapture(readFileSync(outFile)).packets.map((p) => p.data);
  return { objects, written, expected };
}

function checkReplay({ objects, written, expected }: Awaited<ReturnType<typeof replayServices>>) {
  const packets = objects.filter((o) => o.type === "packet");
  expect(packets.map((p) => [p.verdict, p.ct])).toEqual([["pass", "new"], ["pass", "reply"], ["pass", "established"], ["pass", "new"], ["pass", "reply"]]);
  expect(written).toHaveLength(expected.length);
  written.forEach((w, i) => {
    expect(verifyChecksums(w, 14).problems).toEqual([]);
    expect(Buffer.from(w).toString("hex"), `packet ${i + 1}`).toBe(Buffer.from(expected[i]).toString("hex"));
  });
  // The flows are tracked client -> backend, with the service's rev-NAT index.
  const ct = objects.filter((o) => o.type === "conntrack");
  expect(ct.some((e) => e.src === CLIENT4 && e.dst === BACKEND4 && e.dport === 8080)).toBe(true);
  const services = objects.filter((o) => o.type === "lb-service");
  expect(services.map((s) => [s.vip, s.port, s.proto, s.algorithm, s.revNatIndex, s.slots])).toEqual([
    [VIP4, 80, "tcp", "random", 1, [1]],
    [VIP6, 53, "udp", "maglev", 1, [2]],
  ]);
  expect(objects.filter((o) => o.type === "lb-backend").map((b) => [b.id, b.addr, b.port, b.proto])).toEqual([[1, BACKEND4, 8080, "tcp"], [2, BACKEND6, 5353, "udp"]]);
  expect(objects.find((o) => o.type === "lb-maglev")).toMatchObject({ row: 0, entries: 251, backends: [{ id: 2, entries: 251 }], empty: 0 });
}

describe("state file services", () => {
  test("replay (Wasm) DNATs to the backend and reverse-NATs replies, byte for byte", async () => {
    checkReplay(await replayServices("wasm"));
  });

  testIf("replay --engine bpf gives the same packets and tables", kernelUnavailable(), async () => {
    const wasm = await replayServices("wasm");
    const bpf = await replayServices("bpf");
    checkReplay(bpf);
    expect(bpf.written.map((p) => Buffer.from(p).toString("hex"))).toEqual(wasm.written.map((p) => Buffer.from(p).toString("hex")));
    const tables = (o: { objects: { type: string }[] }) => o.objects.filter((x) => x.type.startsWith("lb-"));
    expect(tables(bpf)).toEqual(tables(wasm));
  });

  test("replay prints the LB tables after conntrack", async () => {
    const { cfg, pcap } = files();
    const r = await cli("replay", pcap, "--config", cfg, "--summary");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Wasm services \(2\):\nFRONTEND\s+ALGORITHM\s+REV-NAT\s+MAGLEV ROW\s+SLOTS\s+BACKEND ID PER SLOT\n10\.96\.0\.10:80\/tcp\s+random\s+1\s+-\s+1\s+1\n\[fd00:96::10\]:53\/udp\s+maglev\s+1\s+0\s+1\s+2/);
    expect(r.out).toMatch(/Wasm Maglev rows \(1\):\nROW.*\n\s+0\s+\[fd00:96::10\]:53\/udp\s+251\s+1\s+251\.\.251\s+1\.000\s+0/);
  });

  test("service list shows frontends, backends with ids, weights and slots, rev-NAT index", async () => {
    const { cfg } = files({
      services: [
        { vip: VIP4, port: 80, proto: "tcp", backends: [{ addr: BACKEND4, port: 8080 }, { addr: "10.0.2.21", port: 8080, weight: 2 }, { addr: "10.0.2.22", port: 8080, weight: 0 }] },
        { vip: "10.96.0.11", port: 53, proto: "udp", backends: [] },
        { vip: VIP6, port: 80, proto: "tcp", algorithm: "legacy", backends: [{ addr: BACKEND6, port: 8080 }] },
      ],
    });
    const r = await cli("service", "list", "--config", cfg);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out.split("\n")).toEqual([
      "ID  FRONTEND              ALGORITHM  BACKENDS",
      " 1  10.96.0.10:80/tcp     random     1 => 10.0.2.20:8080 (weight 1, 1 slot)",
      "                                     2 => 10.0.2.21:8080 (weight 2, 2 slots)",
      "                                     3 => 10.0.2.22:8080 (weight 0, draining, 0 slots)",
      " 2  10.96.0.11:53/udp     random     (none: new flows are dropped, DROP_NO_SERVICE)",
      " 1  [fd00:96::10]:80/tcp  legacy     4 => [fd00:2::20]:8080 (weight 1, 1 slot)",
    ]);
    const json = (await cli("service", "list", "--config", cfg, "--json")).lines.map((l) => JSON.parse(l));
    expect(json[0]).toMatchObject({ vip: VIP4, port: 80, proto: "tcp", algorithm: "random", revNatIndex: 1, slots: [1, 2, 2] });
    expect(json[0].backends).toEqual([{ id: 1, addr: BACKEND4, port: 8080, weight: 1 }, { id: 2, addr: "10.0.2.21", port: 8080, weight: 2 }, { id: 3, addr: "10.0.2.22", port: 8080, weight: 0 }]);
  });

  test.each([
    [{ services: {} }, "services: expected a list"],
    [{ services: [{ vip: VIP4, port: 80, proto: "tcp", backends: [], color: 1 }] }, "services[0].color: unknown field"],
    [{ services: [{ vip: VIP4, port: 80, proto: "sctp", backends: [] }] }, "services[0].proto: expected \"tcp\" or \"udp\""],
    [{ services: [{ vip: VIP4, port: 80, proto: "tcp", backends: [{ addr: BACKEND4, port: 0 }] }] }, "services[0].backends[0].port: expected a port 1..65535"],
    [{ services: [{ vip: VIP4, port: 80, proto: "tcp", backends: [{ addr: BACKEND6, port: 80 }] }] }, "services[0].backends[0].addr: fd00:2::20 is IPv6, the VIP IPv4"],
    [{ services: [{ vip: VIP4, port: 80, proto: "tcp", algorithm: "maglev", backends: [{ addr: BACKEND4, port: 80, weight: 2 }] }] }, "services[0].backends[0].weight: expected an integer 0..1"],
    [{ services: [{ vip: VIP4, port: 80, proto: "tcp", backends: [] }, { vip: "10.96.0.010", port: 80, proto: "tcp", backends: [] }] }, "services[1].vip: Invalid IPv4 address"],
    [{ services: [{ vip: VIP6, port: 80, proto: "udp", backends: [] }, { vip: "fd00:96:0:0::10", port: 80, proto: "udp", backends: [] }] }, "services[1]: fd00:96::10 port 80/udp is already services[0]"],
    [{ services: [{ vip: VIP4, port: 80, proto: "tcp", backends: [] }, { vip: VIP4, port: 80, proto: "tcp", backends: [] }] }, "services[1]: 10.96.0.10 port 80/tcp is already services[0]"],
    [{ lb: { services: 2 }, services: [{ vip: VIP4, port: 80, proto: "tcp", backends: [{ addr: BACKEND4, port: 1 }, { addr: BACKEND4, port: 2 }] }] }, "services[0]: service tcp:10.96.0.10:80: the services table would need 3 entries"],
  ])("bad services in the state file: %j -> a message naming the field, nothing replayed", async (state, message) => {
    const { cfg, pcap } = files(state);
    const r = await cli("replay", pcap, "--config", cfg);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toContain(`state file ${cfg}: ${message}`);
    expect((await cli("service", "list", "--config", cfg)).code).toBe(2);
  });

  test("agent --config refuses bad services before anything is set up", async () => {
    const { cfg } = files({ services: [{ vip: VIP4, port: 80, proto: "tcp", backends: [{ addr: "10.0.2.300", port: 8080 }] }] });
    const r = await cli("agent", "--datapath", "tun", "--config", cfg);
    expect(r.code).toBe(2);
    expect(r.err).toContain("services[0].backends[0].addr: ");
  });

  test("service list without --config asks the agent (none here); bpf lb list refuses a pin dir without maps", async () => {
    const none = await cli("service", "list", "--socket", join(dir, "no-agent.sock"));
    expect(none.code).not.toBe(0);
    expect(none.err).toContain(`no agent is running (nothing answers on ${join(dir, "no-agent.sock")})`);
    expect((await cli("service", "show")).code).toBe(2);
    const r = await cli("bpf", "lb", "list", "--pin-dir", dir);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`no pinned lb4_services map there`);
  });
});

describeIf("bpf lb list on pinned kernel maps", kernelUnavailable(), () => {
  const pinDir = `/sys/fs/bpf/mbr-lbcli-${process.pid}`;
  let object: BpfObject | undefined;
  afterAll(() => {
    object?.close();
    rmSync(pinDir, { recursive: true, force: true });
  });

  test("lists what the service manager wrote, as the Wasm tables hold it", async () => {
    const options = resolveOptions({ lb: { maglevM: 251, maglevRows: 4, services: 256, backends: 256, revNat: 64 } });
    object = BpfObject.load(readFileSync(bpfObjectPath("bpf_test")), { name: "mbr-lbcli", pinDir, mapSizes: kernelMapSizes(options), mapTypes: kernelMapTypes(options) });
    configureKernelLb(object, options.lb);
    const dp = await Datapath.create(options);
    const services = [
      { vip: VIP4, port: 80, proto: "tcp" as const, backends: [{ addr: BACKEND4, port: 8080 }, { addr: "10.0.2.21", port: 8080, weight: 2 }] },
      { vip: VIP6, port: 53, proto: "udp" as const, algorithm: "maglev" as const, backends: [{ addr: BACKEND6, port: 5353 }, { addr: "fd00:2::21", port: 5353 }] },
    ];
    applyServices(new ServiceManager([new KernelLbTables(object, options.lb), dp.lbTables()], options.lb), services);

    const json = (await cli("bpf", "lb", "list", "--pin-dir", pinDir, "--json")).lines.map((l) => JSON.parse(l));
    const wasm = readLbListing(dp.lbTables());
    dp.close();
    expect(json.filter((o) => o.type === "lb-service").map(({ type: _t, ...rest }) => rest)).toEqual(wasm.services);
    expect(json.filter((o) => o.type === "lb-backend").map(({ type: _t, ...rest }) => rest)).toEqual(wasm.backends);
    expect(json.filter((o) => o.type === "lb-revnat").map(({ type: _t, ...rest }) => rest)).toEqual(wasm.revNat);
    expect(json.filter((o) => o.type === "lb-maglev").map(({ type: _t, ...rest }) => rest)).toEqual(wasm.maglev);
    expect(wasm.services.map((s) => s.slots)).toEqual([[1, 2, 2], [3, 4]]);
    expect(wasm.maglev[0].backends.map((b) => b.entries).sort()).toEqual([125, 126]);

    const text = await cli("bpf", "lb", "list", "--pin-dir", pinDir);
    expect(text.code).toBe(0);
    expect(text.out).toContain(`Kernel (${pinDir}) services (2):`);
    expect(text.out).toMatch(/10\.96\.0\.10:80\/tcp\s+random\s+1\s+-\s+3\s+1,2,2/);
    expect(text.out).toMatch(/Maglev rows \(1\):\nROW.*\n\s+0\s+\[fd00:96::10\]:53\/udp\s+251\s+2\s+125\.\.126\s+1\.004\s+0/);
  });
});
