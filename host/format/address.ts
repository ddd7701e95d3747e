/** Addresses as people read them: IPv6 in brackets wherever a port follows. */

/** "10.0.0.1" or "[fd00::1]": an address that a ":port" may follow. */
export function bracketIp(addr: string): string {
  return addr.includes(":") ? `[${addr}]` : addr;
}

/** "10.0.0.1:80" or "[fd00::1]:80". */
export function hostPort(addr: string, port: number): string {
  return `${bracketIp(addr)}:${port}`;
}
