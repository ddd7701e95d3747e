/** Network namespace helpers: iproute2 calls, setns, processes in a namespace, and a lab that cleans up after itself. */
export { ip, tc, iproute2Unavailable, netnsList, netnsExists, linkNames, linkExists, netnsPids } from "./iproute2.js";
export { withNetns, setSysctl } from "./enter.js";
export { NetnsProcess, spawnInNetns, type SpawnInNetnsOptions } from "./process.js";
export { NetnsLab, sweep, hasPrefix, type Family, type VethEnd } from "./lab.js";
