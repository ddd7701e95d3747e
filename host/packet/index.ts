// Packet construction, checksums and decoding for tests, benchmarks, the
// sample capture and the CLI. See build.ts for the builder usage guide.

export * from "./address.js";
export * from "./build.js";
export * from "./checksum.js";
export * from "./decode.js";
