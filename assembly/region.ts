// Init-time memory: tables and batches are carved out of linear memory once and
// never freed (a datapath is re-created as a new instance). Nothing on the
// packet path allocates.

let top: u64 = 0;

/** Returns the address of `size` zeroed bytes aligned to 64, or 0 when memory cannot grow. */
export function regionAlloc(size: u64): usize {
  if (top == 0) top = (<u64>__heap_base + 63) & ~63;
  const ptr = (top + 63) & ~63;
  const end = ptr + size;
  if (end > 0xFFFF0000) return 0; // wasm32 tops out at 4 GiB
  const havePages = <u64>memory.size();
  const needPages = (end + 0xFFFF) >> 16;
  if (needPages > havePages && memory.grow(<i32>(needPages - havePages)) < 0) return 0;
  top = end;
  return <usize>ptr;
}

export function regionUsed(): u64 {
  return top;
}
