// node contract_vectors.js VECTORS.json: the contract cases through the browser's parsers
// (run by tests/test_contract.py). Prints {"checked": n, "failed": ["name: detail", ...]}.
import { readFileSync } from "node:fs";
import { checkContract } from "./contract_checks.js";

const results = checkContract(JSON.parse(readFileSync(process.argv[2], "utf8")));
console.log(JSON.stringify({ checked: results.length, failed: results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.detail}`) }));
