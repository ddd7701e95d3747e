/** How the agents' start lines say whether the TUN has offloads and why: "offloads on (default)", "offloads off (--no-offloads)". */
export function offloadsText(on: boolean | undefined, why: string | undefined): string {
  return `offloads ${on ? "on" : "off"}${why ? ` (${why})` : ""}`;
}
