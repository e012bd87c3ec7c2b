// Bundles the extension (and vscode-languageclient) into one file: the .vsix needs no node_modules.
import { build } from "esbuild";

await build({
  entryPoints: ["vscode-client/src/extension.ts"],
  bundle: true,
  outfile: "vscode-client/out/extension.js",
  external: ["vscode"],
  format: "cjs",
  platform: "node",
  target: "node20",
  sourcemap: false,
  minify: false,
  logLevel: "info",
});
