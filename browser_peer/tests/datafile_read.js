// Read CSV files with browser_peer/src/datafile.js under node, as the tab's picker reads them:
//   node datafile_read.js CASES.json  ->  one JSON result per case on stdout
// CASES.json: [{"path": ..., "swarm": {inputShape, numClasses, classNames, outWidth, pixels}}].
// tests/test_js_datafile.py reads the same files with peer/datafile.py and compares.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

globalThis.Papa = createRequire(import.meta.url)("papaparse"); // the tab loads the same file as a script
const { readOwnCsv } = await import("../src/datafile.js");

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = cases.map(({ path, swarm }) => {
  try {
    const d = readOwnCsv(new Uint8Array(readFileSync(path)), swarm);
    const bits = new Uint32Array(d.x.buffer);
    return { x_bits: Array.from(bits), y: Array.from(d.y), n: d.n, targets: d.targets, pixels: d.pixels, notices: d.notices };
  } catch (err) {
    return { error: err.message, kind: err.constructor.name };
  }
});
process.stdout.write(JSON.stringify(results));
