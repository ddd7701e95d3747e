/**
 * `membrane monitor` on a running agent: the forwarder's monitor events
 * (posted by its worker after each batch) go to a hub the agent API's
 * GET /v1/monitor subscribes to; the hub turns the forwarder's monitor on
 * and off with the `monitor` command. Created before the forwarder starts
 * (its onMonitor must exist then), attached once it runs.
 */
import type { ForwarderController } from "../forwarder/commands.js";
import { MembraneError } from "../errors.js";
import { parseIp } from "../packet/address.js";
import type { EndpointLookup } from "../monitor/event.js";
import { MonitorHub } from "../monitor/hub.js";
import type { RawMonitorEvents } from "../monitor/raw-events.js";
import type { CapturedPacket, CaptureSettings } from "../capture/settings.js";
import type { CaptureMessage } from "../capture/api-route.js";

/** Endpoint ids by address (any spelling of it), from the endpoints the agent programs. */
export function endpointLookup(endpoints: () => Iterable<{ id: number; ipv4?: string; ipv6?: string }>): EndpointLookup {
  const key = (a: string) => Buffer.from(parseIp(a).bytes).toString("hex");
  return (address) => {
    const k = key(address);
    for (const e of endpoints()) if ((e.ipv4 && key(e.ipv4) === k) || (e.ipv6 && key(e.ipv6) === k)) return e.id;
    return undefined;
  };
}

export class AgentMonitor {
  private forwarder: ForwarderController | undefined;
  readonly hub: MonitorHub;

  constructor(endpointOf?: EndpointLookup) {
    this.hub = new MonitorHub(async (settings) => {
      if (!this.forwarder) throw new MembraneError("NOT_READY", "monitor: the forwarder is not running yet");
      const r = await this.forwarder.apply({ kind: "monitor", settings });
      if (!r.ok) throw new MembraneError(r.code, r.message);
    }, endpointOf);
  }

  /** The forwarder's onMonitor. */
  readonly deliver = (events: RawMonitorEvents): void => this.hub.deliver(events);

  attach(forwarder: ForwarderController): void {
    this.forwarder = forwarder;
  }

  private captureSend: ((m: CaptureMessage) => void) | undefined;

  /** The forwarder's onCapture. */
  readonly deliverCapture = (m: { packets: CapturedPacket[]; missed: number }): void => {
    const send = this.captureSend;
    if (!send) return;
    for (const p of m.packets) send(p);
    if (m.missed) send({ missed: m.missed });
  };

  /** Starts the one capture an agent runs at a time; the returned function stops it. */
  async startCapture(settings: CaptureSettings, send: (m: CaptureMessage) => void): Promise<() => Promise<void>> {
    if (this.captureSend) throw new MembraneError("BUSY", "capture: another capture is running on this agent; stop it first");
    if (!this.forwarder) throw new MembraneError("NOT_READY", "capture: the forwarder is not running yet");
    const forwarder = this.forwarder;
    this.captureSend = send;
    const on = await forwarder.apply({ kind: "capture", settings });
    if (!on.ok) {
      this.captureSend = undefined;
      throw new MembraneError(on.code, on.message);
    }
    return async () => {
      this.captureSend = undefined;
      await forwarder.apply({ kind: "capture" });
    };
  }
}
