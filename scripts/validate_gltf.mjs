// Validate a .glb/.gltf with Khronos glTF-Validator and print its report as JSON.
//
// Install the validator once, outside the package (git-ignored folder):
//     bash scripts/install_gltf_validator.sh        (-> tools/node), or
//     npm install --prefix .gl gltf-validator
// Run:
//     node scripts/validate_gltf.mjs path/to/head.glb
// The package is looked up in $GLTF_VALIDATOR_DIR/node_modules, tools/node/node_modules,
// .gl/node_modules, then
// the usual Node resolution. Exit code: 0 = no errors, 1 = errors, 2 = usage / setup problem.
import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const roots = [process.env.GLTF_VALIDATOR_DIR, path.join(here, "..", "tools", "node"),
               path.join(here, "..", ".gl"), process.cwd()]
  .filter(Boolean);

function loadValidator() {
  for (const root of roots) {
    const pkg = path.join(root, "node_modules", "gltf-validator", "package.json");
    if (existsSync(pkg)) return createRequire(pkg)("./");
  }
  try {
    return createRequire(import.meta.url)("gltf-validator");
  } catch {
    console.error("gltf-validator not found: run `npm install --prefix .gl gltf-validator` " +
                  "in the repository root (or set GLTF_VALIDATOR_DIR)");
    process.exit(2);
  }
}

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/validate_gltf.mjs FILE.glb");
  process.exit(2);
}
const validator = loadValidator();
const data = new Uint8Array(readFileSync(file));
const report = await validator.validateBytes(data, {
  uri: path.basename(file),
  maxIssues: 200,
  externalResourceFunction: (uri) =>
    Promise.resolve(new Uint8Array(readFileSync(path.join(path.dirname(file), decodeURIComponent(uri))))),
});
console.log(JSON.stringify(report, null, 2));
process.exit(report.issues.numErrors > 0 ? 1 : 0);
