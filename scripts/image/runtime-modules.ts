// Lists the npm packages that the bundle loads at run time: the packages that
// dist/cyphonic.cjs requires by name (esbuild leaves them external), and their
// dependencies, as installed in a node_modules directory.
//
// Usage: node --import tsx scripts/image/runtime-modules.ts BUNDLE NODE_MODULES
// Prints one package name per line, sorted, and exits 1 when a required
// package is not installed.
import fs from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";

interface PackageJson {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Returns the package names of the literal require("...") calls in the bundle, builtins left out. */
export function externalPackages(bundle: string): string[] {
  const builtins = new Set(builtinModules);
  const names = new Set<string>();
  for (const match of bundle.matchAll(/\brequire\("([^"]+)"\)/g)) {
    const specifier = match[1]!;
    if (specifier.startsWith("node:") || specifier.startsWith(".") || specifier.startsWith("/")) continue;
    // "@scope/name/sub/path" and "name/sub/path" belong to the packages "@scope/name" and "name".
    const parts = specifier.split("/");
    const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
    if (builtins.has(name)) continue;
    names.add(name);
  }
  return [...names].sort();
}

/**
 * Returns the packages in `roots` and everything they depend on, as installed
 * in `nodeModules`. An optional dependency that is not installed (the binary
 * package of another CPU, say) is skipped, a missing regular one throws.
 */
export function dependencyClosure(roots: string[], nodeModules: string): string[] {
  const seen = new Set<string>();
  const pending = [...roots];
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (seen.has(name)) continue;
    const manifest = path.join(nodeModules, name, "package.json");
    if (!fs.existsSync(manifest)) throw new Error(`package ${name} is not installed in ${nodeModules}`);
    seen.add(name);
    const pkg = JSON.parse(fs.readFileSync(manifest, "utf8")) as PackageJson;
    pending.push(...Object.keys(pkg.dependencies ?? {}));
    for (const optional of Object.keys(pkg.optionalDependencies ?? {})) {
      if (fs.existsSync(path.join(nodeModules, optional, "package.json"))) pending.push(optional);
    }
  }
  return [...seen].sort();
}

function main(argv: string[]): void {
  if (argv.length !== 2) {
    process.stderr.write("usage: runtime-modules.ts BUNDLE NODE_MODULES\n");
    process.exit(2);
  }
  const [bundlePath, nodeModules] = argv as [string, string];
  const roots = externalPackages(fs.readFileSync(bundlePath, "utf8"));
  try {
    process.stdout.write(dependencyClosure(roots, nodeModules).map((name) => `${name}\n`).join(""));
  } catch (error) {
    process.stderr.write(`runtime-modules: ${(error as Error).message}\n`);
    process.exit(1);
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(__filename)) {
  main(process.argv.slice(2));
}
