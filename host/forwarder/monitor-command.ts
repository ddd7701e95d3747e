/**
 * The forwarder's `monitor` command: monitor events on with the given
 * settings (checked whole first), or off. The worker posts what the ring
 * drains after each batch (worker.ts), so the forwarding loop itself is not
 * touched.
 */
import type { Datapath } from "../datapath.js";
import { checkMonitorSettings, type MonitorSettings } from "../monitor/settings.js";

export function applyMonitor(dp: Datapath, settings: MonitorSettings | undefined): { summary: string } {
  if (settings === undefined) {
    dp.monitor().configure(undefined);
    return { summary: "monitor off" };
  }
  const checked = checkMonitorSettings(settings, "monitor.settings");
  dp.monitor().configure(checked);
  return { summary: `monitor on: ${checked.types.join(", ")}; one trace in ${checked.sample}; at most ${checked.ratePerSecond} events/s` };
}
