export { readManifests, parseManifestText, parseManifest } from "./read.js";
export * from "./kinds.js";
