// Bundles the TypeScript program into one CommonJS file, dist/cyphonic.cjs.
// Native packages stay external: they load their own prebuilt binaries at run time.
import { build } from "esbuild";

const external = ["sodium-native", "koffi", "better-sqlite3"];

await build({
  entryPoints: ["firmware/src/cli/main.ts"],
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  outfile: "dist/cyphonic.cjs",
  banner: { js: "#!/usr/bin/env node" },
  external,
  sourcemap: "linked",
  logLevel: "warning",
});
