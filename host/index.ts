/** membrane as a library: `import { Datapath } from "membrane"`. */
export { Datapath, type BatchOptions, type DatapathCounters, type DropCount, type GcResult } from "./datapath.js";
export { PacketBatch, type Direction, type LinkKind, type PacketMeta } from "./batch.js";
export type { PacketVerdict, CtOutcome } from "./verdict.js";
export { DEFAULTS, resolveOptions, type DatapathOptions, type ConntrackOptions, type FragmentOptions } from "./config.js";
export { GcSchedule, type GcScheduleOptions } from "./conntrack/gc-schedule.js";
export { formatTuple, type CtRecord, type CtTuple, type CtTableName } from "./conntrack/records.js";
export { MembraneError, InvalidInputError, NotSupportedError } from "./errors.js";
export type { TableName } from "./wasm/core.js";
export { PolicyDatapathWriter, type WriteSummary } from "./policy/datapath-writer.js";
export { PolicyEngine, type EngineChange } from "./policy/engine.js";
export type { ForwarderCommand, CommandResult, ForwarderController } from "./forwarder/commands.js";
export { parsePolicyText, type PolicyDocument } from "./policy/document.js";
export { KernelDatapath, type KernelDatapathOptions } from "./kernel/datapath.js";
export {
  ServiceManager, type ServiceSpec, type BackendSpec, type ServiceAlgorithm, type ServiceProto, type ServiceInfo,
} from "./lb/manager.js";
export { maglevTable, maglevSizeAdvice, MAGLEV_PRIMES, MAGLEV_DEFAULT_M, type MaglevBackend, type MaglevVariant } from "./lb/maglev.js";
export { loadState, updateState } from "./state/file.js";
export { validateState, datapathState, STATE_KEYS, type MembraneState, type DatapathState } from "./state/schema.js";
export { programDatapath } from "./state/program.js";
