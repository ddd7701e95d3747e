export { CaptureError, type CaptureErrorCode } from "./errors.js";
export { LinkType, linkTypeFromNumber } from "./link-type.js";
export {
  readCapture,
  iterateCapture,
  detectFormat,
  type Capture,
  type CaptureFormat,
  type CapturePacket,
} from "./read.js";
export { PcapWriter, writeCapture, DEFAULT_SNAPLEN, type PacketToWrite } from "./write.js";
