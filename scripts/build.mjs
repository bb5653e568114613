// Bundles the TypeScript program into two CommonJS files in dist/:
// cyphonic.cjs, the `cyphonic` program, and dataplane.cjs, the dataplane
// worker that the node daemon forks (firmware/src/dataplane/supervisor.ts).
// The worker gets its own bundle so that its process loads only the modules
// of the per-packet path, not the CLI with the cloud, the adapter and zod.
// Native packages stay external: they load their own prebuilt binaries at run time.
import fs from "node:fs";
import path from "node:path";
import { build } from "esbuild";

const external = ["sodium-native", "koffi", "better-sqlite3"];
const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  external,
  sourcemap: "linked",
  logLevel: "warning",
  // The files are written by writeAscii below.
  write: false,
};

/** File name of the worker's bundle, which the supervisor looks for next to cyphonic.cjs. */
const DATAPLANE_BUNDLE = "dataplane.cjs";

/**
 * Writes esbuild's output files, with each non-ASCII character of a .cjs
 * file replaced by its \uXXXX escape.
 *
 * V8 keeps a script's source in the heap while the script lives: one byte
 * per character when every character is Latin-1, two bytes otherwise.
 * esbuild escapes non-ASCII characters in strings, regular expressions and
 * identifiers (its default charset is ASCII) but copies comments unchanged.
 * One em dash in a comment of zod made cyphonic.cjs a 3.0 MB string in the
 * heap instead of 1.5 MB (heap snapshot, Node 20.20). In a comment the
 * escape is plain text, and elsewhere it denotes the same character. A
 * character outside the BMP becomes two escapes, one per UTF-16 surrogate.
 */
function writeAscii(result) {
  for (const file of result.outputFiles) {
    fs.mkdirSync(path.dirname(file.path), { recursive: true });
    if (!file.path.endsWith(".cjs")) {
      fs.writeFileSync(file.path, file.contents);
      continue;
    }
    const ascii = file.text.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    fs.writeFileSync(file.path, ascii);
  }
}

const results = await Promise.all([
  build({
    ...common,
    entryPoints: ["firmware/src/cli/main.ts"],
    outfile: "dist/cyphonic.cjs",
    banner: { js: "#!/usr/bin/env node" },
    define: { CYPHONIC_DATAPLANE_BUNDLE: JSON.stringify(DATAPLANE_BUNDLE) },
  }),
  build({
    ...common,
    entryPoints: ["firmware/src/cli/dataplane-main.ts"],
    outfile: `dist/${DATAPLANE_BUNDLE}`,
  }),
]);
for (const result of results) writeAscii(result);
