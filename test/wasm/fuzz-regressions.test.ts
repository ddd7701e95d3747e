// Minimal cases of bugs the fuzz properties found, as fixed byte strings.
//
// IPv6 non-first fragments whose fragment header is followed (in the original
// datagram) by another extension header. The fragment header's Next Header
// names the first header of the fragmentable part (RFC 8200 4.5), here 60
// (destination options); in a non-first fragment what follows the fragment
// header is the middle of the datagram, not a header. assembly/parse.ts
// walkIpv6 (the `nh == 44` branch) keeps walking after a fragment header with a
// non-zero offset and parses the fragment's data as extension headers (the
// kernel program, bpf/lib/parse.h ipv6_walk, has the same loop). The result
// depends on the payload bytes: DROP_INVALID_EXTHDR here, DROP_CT_UNKNOWN_PROTO
// or DROP_FRAG_NOSUPPORT for other payloads. Stopping the walk at a non-first
// fragment is not enough on its own: assembly/frag.ts keys fragments by pProto,
// which is the final L4 protocol (17) for the first fragment but could only be
// the fragment header's Next Header (60) for the later ones, so the key must be
// something all fragments share (the Next Header of the fragment header, or
// no protocol at all: RFC 8200 identifies a datagram by source, destination and
// identification).
import { beforeAll, describe, expect, it } from "vitest";
import { Datapath } from "../../host/datapath.js";

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));

// fd00::1 -> fd00::2 UDP 1000 -> 53 with 8 zero payload bytes, carrying a
// destination options header, split by fragment6(whole, 16, 1).
const FIRST = hex(`
  60000000 0018 2c 40 fd000000000000000000000000000001 fd000000000000000000000000000002
  3c 00 0001 00000001
  11 00 01 04 00000000
  03e8 0035 0010 01ad`);
const SECOND = hex(`
  60000000 0010 2c 40 fd000000000000000000000000000001 fd000000000000000000000000000002
  3c 00 0010 00000001
  0000000000000000`);

let dp: Datapath;

beforeAll(async () => {
  dp = await Datapath.create({ conntrack: { tcpEntries: 64, otherEntries: 64 }, fragments: { entries: 64 } });
});

describe("IPv6 fragments with extension headers after the fragment header", () => {
  it("passes the second fragment after the first (same flow, established)", () => {
    dp.flush();
    const first = dp.decide(FIRST, { link: "ip", direction: "egress", now: 1 });
    expect({ verdict: first.verdict, ct: first.ct }).toEqual({ verdict: "pass", ct: "new" });
    const second = dp.decide(SECOND, { link: "ip", direction: "egress", now: 1 });
    // got: drop DROP_INVALID_EXTHDR (the fragment's 8 data bytes were parsed as two extension headers)
    expect({ verdict: second.verdict, ct: second.ct, dropReason: second.dropReason })
      .toEqual({ verdict: "pass", ct: "established", dropReason: undefined });
  });

  it("drops the second fragment alone as DROP_FRAG_NOSUPPORT", () => {
    dp.flush();
    const v = dp.decide(SECOND, { link: "ip", direction: "egress", now: 1 });
    // got: DROP_INVALID_EXTHDR
    expect(v.dropReason).toBe("DROP_FRAG_NOSUPPORT");
  });
});
