// Who moves several TUN queues' packets by default: an I/O thread per queue only
// when each of them and the deciding thread can have a CPU (open-device.ts).
import { describe, expect, it } from "vitest";
import { useIoWorkers } from "../../host/forwarder/open-device.js";

describe("useIoWorkers", () => {
  it("uses I/O threads by default only with more CPUs than queues", () => {
    expect(useIoWorkers({ queues: 2 }, 2)).toBe(false);
    expect(useIoWorkers({ queues: 2 }, 3)).toBe(true);
    expect(useIoWorkers({ queues: 4 }, 4)).toBe(false);
    expect(useIoWorkers({ queues: 4 }, 16)).toBe(true);
  });

  it("follows an explicit choice either way", () => {
    expect(useIoWorkers({ queues: 2, ioWorkers: true }, 2)).toBe(true);
    expect(useIoWorkers({ queues: 2, ioWorkers: false }, 16)).toBe(false);
  });

  it("never for one queue or with offloads (a slot cannot hold a 64 KiB super-packet cheaply)", () => {
    expect(useIoWorkers({}, 16)).toBe(false);
    expect(useIoWorkers({ queues: 1, ioWorkers: true }, 16)).toBe(false);
    expect(useIoWorkers({ queues: 2, offloads: true }, 16)).toBe(false);
    expect(useIoWorkers({ queues: 2, offloads: true, ioWorkers: true }, 16)).toBe(false);
  });
});
