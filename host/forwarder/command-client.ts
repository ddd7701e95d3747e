/**
 * The controlling thread's end of the command channel: numbers each command,
 * sends it as plain data and resolves its promise with the one reply that
 * carries the number. When the channel closes (the worker stopped or died),
 * commands still waiting are answered with a refusal, so no caller hangs.
 */
import type { MessagePort } from "node:worker_threads";
import type { CommandReply, CommandResult, ForwarderCommand, ForwarderController } from "./commands.js";

export class CommandClient implements ForwarderController {
  private nextId = 1;
  private readonly pending = new Map<number, { kind: ForwarderCommand["kind"]; resolve: (r: CommandResult) => void }>();
  private closedWith?: string;

  constructor(private readonly port: MessagePort) {
    port.on("message", (m: CommandReply) => {
      const waiting = this.pending.get(m.id);
      if (!waiting) return;
      this.pending.delete(m.id);
      waiting.resolve(m.result);
    });
    port.on("close", () => this.close("the forwarder stopped"));
    // Only waiting commands should keep the process alive.
    port.unref();
  }

  apply(command: ForwarderCommand): Promise<CommandResult> {
    const kind = command?.kind;
    if (this.closedWith) return Promise.resolve({ ok: false, kind, code: "NOT_RUNNING", message: `${kind}: ${this.closedWith}` });
    const id = this.nextId++;
    return new Promise<CommandResult>((resolve) => {
      this.pending.set(id, { kind, resolve });
      if (this.pending.size === 1) this.port.ref();
      try {
        this.port.postMessage({ id, command });
      } catch (err) {
        // Not structured-clone-able (a function, a class instance with private state): refused before it left.
        this.pending.delete(id);
        resolve({ ok: false, kind, code: "INVALID_INPUT", message: `${kind}: a command must be plain data: ${(err as Error).message}` });
      }
    }).finally(() => {
      if (this.pending.size === 0) this.port.unref();
    });
  }

  /** Answers every waiting command with NOT_RUNNING; later ones get it at once. */
  close(reason = "the forwarder stopped"): void {
    if (this.closedWith) return;
    this.closedWith = reason;
    for (const [id, w] of this.pending) {
      this.pending.delete(id);
      w.resolve({ ok: false, kind: w.kind, code: "NOT_RUNNING", message: `${w.kind}: ${reason} before applying it` });
    }
    this.port.unref();
    this.port.close();
  }
}
