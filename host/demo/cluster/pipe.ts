/**
 * Two sockets joined both ways, each closed when the other closes or fails:
 * the one piece of the demo's bridges (kvstore in, metrics out).
 */
import type net from "node:net";

export function pipeBothWays(a: net.Socket, b: net.Socket, onClose: () => void = () => {}): void {
  a.pipe(b);
  b.pipe(a);
  const close = () => {
    a.destroy();
    b.destroy();
    onClose();
  };
  for (const s of [a, b]) {
    s.on("error", close);
    s.on("close", close);
  }
}
