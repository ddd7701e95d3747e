// The ESP path's UDP socket on loopback: a datagram sent is received with its
// sender, poll(2) says when one waits, an empty socket answers at once, a bad
// address or a closed socket is a clear error.
import { describe, expect, it } from "vitest";
import { UdpSocket, sockaddrIn } from "../../host/sys/udp-socket.js";
import { ipv4Number } from "../../host/encrypt/tunnel.js";

describe("UdpSocket", () => {
  it("sends and receives datagrams without blocking, and polls with another fd", () => {
    const port = 40000 + (process.pid % 10000);
    const a = UdpSocket.bind("127.0.0.1", 0);
    try {
      const buf = Buffer.alloc(2048);
      const c = UdpSocket.bind("127.0.0.1", port);
      try {
        expect(c.receive(buf)).toBeUndefined(); // nothing waiting: no block
        expect(c.waitWith(-1, 0)).toBe(false);
        expect(a.send(Buffer.from("hello esp"), 9, sockaddrIn("127.0.0.1", port))).toBe(true);
        expect(c.waitWith(-1, 1000)).toBe(true);
        const got = c.receive(buf);
        expect(got).toEqual({ length: 9, from: ipv4Number("127.0.0.1") });
        expect(buf.subarray(0, 9).toString()).toBe("hello esp");
      } finally {
        c.close();
      }
    } finally {
      a.close();
    }
  });

  it("refuses an IPv6 outer address and a closed socket with clear errors", () => {
    expect(() => sockaddrIn("fd00::1", 4500)).toThrow(/IPv4 outer headers only, got fd00::1/);
    expect(() => UdpSocket.bind("192.0.2.77", 4500)).toThrow(/bind UDP 192\.0\.2\.77:4500: EADDRNOTAVAIL/);
    const s = UdpSocket.bind("127.0.0.1", 0);
    s.close();
    s.close(); // idempotent
    expect(() => s.receive(Buffer.alloc(16))).toThrow(/UDP socket 127\.0\.0\.1:0 is closed/);
  });
});
