/**
 * GET /v1/capture on the agent's API socket: the packets the forwarder sees,
 * as JSON lines (the bytes in base64), until the client hangs up. Query:
 * stage (repeatable: before, after), address, port, rate, snaplen. One
 * capture at a time per agent.
 */
import { ApiStream, type ApiRequest, type ApiRoutes } from "../api/server.js";
import { intQuery } from "../api/query.js";
import { captureMatch } from "./match.js";
import { checkCaptureSettings, type CapturedPacket, type CaptureSettings } from "./settings.js";

export type CaptureMessage = CapturedPacket | { missed: number };

/** A captured packet as one JSON line carries it. */
export interface CapturedPacketJson extends Omit<CapturedPacket, "data"> {
  data: string;
}

export interface Capturer {
  startCapture(settings: CaptureSettings, send: (m: CaptureMessage) => void): Promise<() => Promise<void>>;
}


export function captureApiRoutes(capturer: Capturer): ApiRoutes {
  return {
    "GET /v1/capture": (req: ApiRequest) => {
      const q = req.query;
      const settings = checkCaptureSettings({
        stages: q.getAll("stage"), address: q.get("address") ?? undefined, port: intQuery(q, "port", "capture"), ratePerSecond: intQuery(q, "rate", "capture"), snaplen: intQuery(q, "snaplen", "capture"),
      });
      captureMatch(settings);
      return new ApiStream(async (send, closed) => {
        const stop = await capturer.startCapture(settings, (m) => send("data" in m ? { ...m, data: Buffer.from(m.data).toString("base64") } : m));
        send({ capturing: settings });
        await closed;
        await stop();
      });
    },
  };
}
