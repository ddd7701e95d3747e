/**
 * The demo's services: a ClusterIP-style VIP per family in front of pod2.
 * TCP port 80 goes to two backends on pod2 (ports 8080 and 8081, so the live
 * view shows new connections spreading over both); UDP port 53 to pod2:5353.
 */
import type { ServiceSpec } from "../lb/manager.js";
import type { Endpoint } from "./topology.js";

export const SERVICE_VIP4 = "10.96.0.10";
export const SERVICE_VIP6 = "fd00:96::10";
export const SERVICE_TCP_PORT = 80;
export const SERVICE_UDP_PORT = 53;
export const BACKEND_TCP_PORTS = [8080, 8081] as const;
export const BACKEND_UDP_PORT = 5353;

export function demoServices(backend: Endpoint): ServiceSpec[] {
  return ([[SERVICE_VIP4, backend.v4], [SERVICE_VIP6, backend.v6]] as const).flatMap(([vip, addr]) => [
    { vip, port: SERVICE_TCP_PORT, proto: "tcp" as const, backends: BACKEND_TCP_PORTS.map((port) => ({ addr, port })) },
    { vip, port: SERVICE_UDP_PORT, proto: "udp" as const, backends: [{ addr, port: BACKEND_UDP_PORT }] },
  ]);
}
