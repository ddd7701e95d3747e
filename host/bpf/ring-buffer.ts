/**
 * Reading a BPF_MAP_TYPE_RINGBUF map through libbpf's ring_buffer: consume()
 * hands every record the kernel committed since the last call to `onRecord`
 * (a copy: the ring's memory is reused once the callback returns) and says
 * how many there were. Polling is the caller's (no epoll thread here).
 */
import { MembraneError } from "../errors.js";
import { koffi } from "../sys/ffi.js";
import { libbpf } from "./libbpf.js";

export interface RingBufferReader {
  /** Records read now; each went to onRecord first. */
  consume(): number;
  close(): void;
}

let bindings: { create: (fd: number, cb: unknown, ctx: null, opts: null) => unknown; consume: (rb: unknown) => number; free: (rb: unknown) => void; proto: unknown } | undefined;

function ringBindings(): NonNullable<typeof bindings> {
  if (bindings) return bindings;
  libbpf(); // checks the library and its version once, with the clear error if missing
  const k = koffi();
  const lib = k.load("libbpf.so.1");
  const proto = k.proto("int", ["void *", "void *", "size_t"]);
  bindings = {
    create: lib.func("ring_buffer__new", "void *", ["int", k.pointer(proto), "void *", "void *"]),
    consume: lib.func("ring_buffer__consume", "int", ["void *"]),
    free: lib.func("ring_buffer__free", "void", ["void *"]),
    proto,
  };
  return bindings;
}

export function openRingBuffer(fd: number, mapName: string, onRecord: (record: Uint8Array) => void): RingBufferReader {
  const b = ringBindings();
  const k = koffi();
  const callback = k.register((_ctx: unknown, data: unknown, size: number | bigint): number => {
    try {
      onRecord(new Uint8Array(k.view(data as never, Number(size))).slice());
    } catch {
      // A throw cannot cross into C; the record is lost, the reader goes on.
    }
    return 0;
  }, k.pointer(b.proto as never));
  const rb = b.create(fd, callback, null, null);
  if (!rb) {
    k.unregister(callback);
    throw new MembraneError("BPF_RINGBUF", `open ring buffer ${mapName}: libbpf refused it (errno ${libbpf().errno()})`);
  }
  let closed = false;
  return {
    consume: () => {
      if (closed) return 0;
      const n = b.consume(rb);
      if (n < 0) throw new MembraneError("BPF_RINGBUF", `read ring buffer ${mapName}: error ${n}`);
      return n;
    },
    close: () => {
      if (closed) return;
      closed = true;
      b.free(rb);
      k.unregister(callback);
    },
  };
}
