// The datapath configuration (struct dp_config), copied into globals at init so
// the packet path reads plain Wasm globals.
import {
  DP_CONFIG_CT_FULL_POLICY, DP_CONFIG_CT_MAX_ANY, DP_CONFIG_CT_MAX_TCP, DP_CONFIG_CT_TIMEOUT_ANY,
  DP_CONFIG_CT_TIMEOUT_CLOSE, DP_CONFIG_CT_TIMEOUT_SYN, DP_CONFIG_CT_TIMEOUT_TCP, DP_CONFIG_FRAG_MAX,
  DP_CONFIG_FRAG_TIMEOUT, DP_CONFIG_HASH_SEED,
} from "./generated/layout";

export let cfgCtMaxTcp: u32 = 0;
export let cfgCtMaxAny: u32 = 0;
export let cfgTimeoutTcp: u32 = 0;
export let cfgTimeoutSyn: u32 = 0;
export let cfgTimeoutClose: u32 = 0;
export let cfgTimeoutAny: u32 = 0;
export let cfgFullPolicy: u32 = 0;
export let cfgHashSeed: u32 = 0;
export let cfgFragMax: u32 = 0;
export let cfgFragTimeout: u32 = 0;

export function loadConfig(ptr: usize): void {
  cfgCtMaxTcp = load<u32>(ptr + DP_CONFIG_CT_MAX_TCP);
  cfgCtMaxAny = load<u32>(ptr + DP_CONFIG_CT_MAX_ANY);
  cfgTimeoutTcp = load<u32>(ptr + DP_CONFIG_CT_TIMEOUT_TCP);
  cfgTimeoutSyn = load<u32>(ptr + DP_CONFIG_CT_TIMEOUT_SYN);
  cfgTimeoutClose = load<u32>(ptr + DP_CONFIG_CT_TIMEOUT_CLOSE);
  cfgTimeoutAny = load<u32>(ptr + DP_CONFIG_CT_TIMEOUT_ANY);
  cfgFullPolicy = load<u32>(ptr + DP_CONFIG_CT_FULL_POLICY);
  cfgHashSeed = load<u32>(ptr + DP_CONFIG_HASH_SEED);
  cfgFragMax = load<u32>(ptr + DP_CONFIG_FRAG_MAX);
  cfgFragTimeout = load<u32>(ptr + DP_CONFIG_FRAG_TIMEOUT);
}
