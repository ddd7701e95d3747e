export { createMetrics, timed, METRICS_PREFIX, type Metrics, type Outcome } from "./registry.js";
export { registerDatapathCollector, type DatapathFigures, type DatapathSource } from "./datapath-collector.js";
export { startMetricsServer, parseListenAddress, DEFAULT_METRICS_ADDRESS, type MetricsServer, type ListenAddress } from "./server.js";
