// Errors that only the user can fix by editing the token file on the boot
// partition (or removing it). The CLI exits with status 2 on them, as on any
// other invalid token file, because TokenFileError is their base class.
import { TokenFileError } from "../../node/token-file.js";
import { BOOT_TOKEN_FILE_NAME } from "./boot-file.js";

export class BootTokenFileError extends TokenFileError {
  /**
   * @param line 1-based line of the field, or null when the problem is not on one line
   * @param message states the problem and the fix, without the file name
   */
  constructor(
    readonly line: number | null,
    field: string | null,
    message: string,
  ) {
    super(BOOT_TOKEN_FILE_NAME, field, line === null ? message : `line ${line}: ${message}`);
    this.name = "BootTokenFileError";
  }
}
