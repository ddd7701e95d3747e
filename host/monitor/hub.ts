/**
 * The agent's monitor hub: every `membrane monitor` client subscribes with
 * its settings and filter; the hub keeps the datapath producing what the
 * subscribers together need (every kind any asks for, the finest sampling,
 * the highest rate cap) and off when none is left, decodes each drain once
 * and hands each subscriber the events its filter takes. Losses (rate cap,
 * full ring) are told to every subscriber.
 */
import { decodeMonitorEvents, type EndpointLookup, type MonitorEventView } from "./event.js";
import type { MonitorFilter } from "./filter.js";
import type { RawMonitorEvents } from "./raw-events.js";
import { unionSettings, type MonitorSettings } from "./settings.js";

export type MonitorMessage = MonitorEventView | { lost: number };

interface Subscriber {
  settings: MonitorSettings;
  filter: MonitorFilter;
  send: (m: MonitorMessage) => void;
}

export class MonitorHub {
  private readonly subscribers = new Set<Subscriber>();
  private applied = "off";

  /** `configure` turns the datapath's monitor on with settings, or off (undefined); it rejects when the datapath refused. */
  constructor(private readonly configure: (settings: MonitorSettings | undefined) => Promise<void>, private readonly endpointOf?: EndpointLookup) {}

  get size(): number {
    return this.subscribers.size;
  }

  /** Adds a subscriber; resolves once the datapath produces what it asked for. The returned function removes it. */
  async subscribe(settings: MonitorSettings, filter: MonitorFilter, send: (m: MonitorMessage) => void): Promise<() => Promise<void>> {
    const sub = { settings, filter, send };
    this.subscribers.add(sub);
    try {
      await this.reconfigure();
    } catch (err) {
      this.subscribers.delete(sub);
      throw err;
    }
    return async () => {
      if (this.subscribers.delete(sub)) await this.reconfigure();
    };
  }

  /** A drain from the datapath. */
  deliver(raw: RawMonitorEvents): void {
    if (this.subscribers.size === 0) return;
    const events = raw.count > 0 ? decodeMonitorEvents(raw, this.endpointOf) : [];
    for (const sub of this.subscribers) {
      for (const e of events) if (sub.filter(e)) sub.send(e);
      if (raw.lost > 0) sub.send({ lost: raw.lost });
    }
  }

  private async reconfigure(): Promise<void> {
    const wanted = unionSettings([...this.subscribers].map((s) => s.settings));
    const key = wanted ? JSON.stringify(wanted) : "off";
    if (key === this.applied) return;
    await this.configure(wanted);
    this.applied = key;
  }
}
