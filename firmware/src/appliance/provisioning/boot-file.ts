// The token file on the FAT boot partition: where to find it and how to
// retire it once the state directory contains a durable copy.
//
// Why overwrite before deleting: deleting a file on FAT only marks its
// directory entry as deleted and its clusters as free in the allocation
// table. The data stays in those clusters until another file reuses them,
// and undelete tools read it back from a card put into any PC. Linux's vfat
// driver writes an existing file's bytes into the clusters the file already
// has (FAT has no copy-on-write), so overwriting the file in place and
// fsyncing it replaces the secret in those sectors before the entry goes.
//
// Limits: an SD card's controller maps each write of a logical sector to a
// new flash page and erases the old page only later, so the old bytes can
// stay in the chip for a while. They cannot be read through the card's
// interface, only with tools that read the flash chip directly. Copies made
// elsewhere are not touched: the user's PC, or backup files that an editor
// wrote next to the file on the card.
import fs from "node:fs";
import path from "node:path";

export const BOOT_TOKEN_FILE_NAME = "cyphonic-token.txt";

/** Raspberry Pi OS mounts the FAT partition at /boot/firmware since Bookworm, and at /boot before. */
export const DEFAULT_BOOT_DIRS = ["/boot/firmware", "/boot"];

/** Byte that replaces every byte of the file, so a file cut off during the wipe reads as blank lines. */
const WIPE_BYTE = 0x0a;

/** Returns the path of the first token file found in `bootDirs`, in order, or null. */
export function findBootTokenFile(bootDirs: readonly string[]): string | null {
  for (const dir of bootDirs) {
    const file = path.join(dir, BOOT_TOKEN_FILE_NAME);
    let stats: fs.Stats | undefined;
    try {
      stats = fs.statSync(file, { throwIfNoEntry: false });
    } catch (err) {
      // The boot directory itself is missing or a file: look in the next one.
      if ((err as NodeJS.ErrnoException).code === "ENOTDIR") continue;
      throw err;
    }
    if (!stats) continue;
    if (!stats.isFile()) throw new Error(`${file} is not a regular file; remove it from the boot partition`);
    return file;
  }
  return null;
}

/** Overwrites every byte of `file` in place with a newline and fsyncs it. The size does not change. */
export function wipeFile(file: string): void {
  const fd = fs.openSync(file, "r+");
  try {
    const size = fs.fstatSync(fd).size;
    const fill = Buffer.alloc(size, WIPE_BYTE);
    let written = 0;
    while (written < size) written += fs.writeSync(fd, fill, written, size - written, written);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Deletes `file` and fsyncs its directory, so the deletion survives a power cut. A missing file is not an error. */
export function deleteFileDurably(file: string): void {
  fs.rmSync(file, { force: true });
  const dirFd = fs.openSync(path.dirname(file), "r");
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}
