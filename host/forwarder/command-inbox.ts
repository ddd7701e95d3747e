/**
 * The worker's end of the command channel. The forwarder loop never yields
 * to the event loop, so commands are taken synchronously
 * (receiveMessageOnPort) when the loop asks: between batches, never while one
 * is being decided. Each command gets exactly one reply on the same port.
 */
import { receiveMessageOnPort, type MessagePort } from "node:worker_threads";
import type { CommandApplier } from "./command-applier.js";
import type { CommandReply, CommandRequest } from "./commands.js";

export class CommandInbox {
  /** Commands applied (accepted or refused) so far. */
  handled = 0;

  constructor(private readonly port: MessagePort, private readonly applier: CommandApplier) {}

  /** Applies every command waiting now, in order; returns how many. */
  drain(): number {
    let n = 0;
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
      const req = m.message as CommandRequest;
      const id = typeof req === "object" && req !== null && Number.isInteger(req.id) ? req.id : -1;
      const reply: CommandReply = { id, result: this.applier.apply(req?.command) };
      this.port.postMessage(reply);
      n++;
    }
    this.handled += n;
    return n;
  }

  close(): void {
    this.port.close();
  }
}
