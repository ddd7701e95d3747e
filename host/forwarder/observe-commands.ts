/**
 * The forwarder's `monitor` and `capture` commands: monitor events or the
 * packet capture tap on with the given settings (checked whole first), or
 * off. The worker posts what they collect after each batch (worker.ts), so
 * the forwarding loop itself is not touched.
 */
import type { Datapath } from "../datapath.js";
import { checkMonitorSettings, type MonitorSettings } from "../monitor/settings.js";
import { checkCaptureSettings, type CaptureSettings } from "../capture/settings.js";
import { captureMatch } from "../capture/match.js";

export function applyMonitor(dp: Datapath, settings: MonitorSettings | undefined): { summary: string } {
  if (settings === undefined) {
    dp.monitor().configure(undefined);
    return { summary: "monitor off" };
  }
  const checked = checkMonitorSettings(settings, "monitor.settings");
  dp.monitor().configure(checked);
  return { summary: `monitor on: ${checked.types.join(", ")}; one trace in ${checked.sample}; at most ${checked.ratePerSecond} events/s` };
}

/** The forwarder's `capture` command: the capture tap on with the given settings (checked whole first), or off. */
export function applyCapture(dp: Datapath, settings: CaptureSettings | undefined): { summary: string } {
  if (settings === undefined) {
    dp.capture().configure(undefined);
    return { summary: "capture off" };
  }
  const checked = checkCaptureSettings(settings, "capture.settings");
  captureMatch(checked); // a bad address is refused here, before the tap changes
  dp.capture().configure(checked);
  return { summary: `capture on: ${checked.stages.join(" and ")} the datapath; at most ${checked.ratePerSecond} packets/s` };
}
