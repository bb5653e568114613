// Reader for the classic libpcap file format that `tcpdump -w` writes
// (pcap-savefile(5)): a 24-byte global header, then records that each start
// with a 16-byte header. pcapng files are not supported.

export interface PcapRecord {
  /** Capture time in microseconds since the Unix epoch. */
  timeUs: number;
  /** Length of the packet on the wire, which exceeds `data.length` when the snapshot length cut the packet. */
  originalLength: number;
  data: Buffer;
}

export interface PcapFile {
  /** LINKTYPE_* value from the global header, for example 1 for Ethernet. */
  linkType: number;
  snapLength: number;
  records: PcapRecord[];
}

const GLOBAL_HEADER_BYTES = 24;
const RECORD_HEADER_BYTES = 16;
const MAGIC_MICROSECONDS = 0xa1b2c3d4;
const MAGIC_NANOSECONDS = 0xa1b23c4d;

/** Parses a whole pcap file. Throws on an unknown magic number or a truncated record. */
export function parsePcap(file: Buffer): PcapFile {
  if (file.length < GLOBAL_HEADER_BYTES) {
    throw new Error(`invalid pcap: ${file.length} bytes is shorter than the ${GLOBAL_HEADER_BYTES}-byte global header`);
  }
  const format = readFormat(file);
  const read32 = (offset: number): number =>
    format.littleEndian ? file.readUInt32LE(offset) : file.readUInt32BE(offset);

  const snapLength = read32(16);
  // The upper bits of the link-type field carry FCS flags (pcap-savefile(5)).
  const linkType = read32(20) & 0x0fffffff;
  const records: PcapRecord[] = [];
  let offset = GLOBAL_HEADER_BYTES;
  while (offset < file.length) {
    if (offset + RECORD_HEADER_BYTES > file.length) {
      throw new Error(`invalid pcap: record header at byte ${offset} is truncated`);
    }
    const seconds = read32(offset);
    const fraction = read32(offset + 4);
    const includedLength = read32(offset + 8);
    const originalLength = read32(offset + 12);
    const dataStart = offset + RECORD_HEADER_BYTES;
    if (dataStart + includedLength > file.length) {
      throw new Error(`invalid pcap: record at byte ${offset} declares ${includedLength} bytes but the file ends first`);
    }
    const fractionUs = format.nanoseconds ? Math.floor(fraction / 1000) : fraction;
    records.push({
      timeUs: seconds * 1_000_000 + fractionUs,
      originalLength,
      data: file.subarray(dataStart, dataStart + includedLength),
    });
    offset = dataStart + includedLength;
  }
  return { linkType, snapLength, records };
}

function readFormat(file: Buffer): { littleEndian: boolean; nanoseconds: boolean } {
  const little = file.readUInt32LE(0);
  const big = file.readUInt32BE(0);
  for (const [magic, littleEndian] of [
    [little, true],
    [big, false],
  ] as const) {
    if (magic === MAGIC_MICROSECONDS) {
      return { littleEndian, nanoseconds: false };
    }
    if (magic === MAGIC_NANOSECONDS) {
      return { littleEndian, nanoseconds: true };
    }
  }
  throw new Error(`invalid pcap: unknown magic number 0x${big.toString(16).padStart(8, "0")} (pcapng is not supported)`);
}
