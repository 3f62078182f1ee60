// JSON Schema validation of the wire contract: Ajv (draft 2020-12) over the schemas generated
// from protocols/ (schemas.js), plus the JSON rules both languages' parsers apply before any
// schema: lengths count code points, no lone surrogate, bounded nesting (protocols/contract.py).
// Ajv comes from node_modules/ajv-dist (pinned in package.json, served by the signaling
// server at /peer/node_modules/): imported as a module, its UMD bundle defines `ajv2020` on
// window in a page and is a CommonJS module under node.
import * as ajvBundle from "../../node_modules/ajv-dist/dist/ajv2020.min.js";

const Ajv2020 = ajvBundle.default?.default ?? ajvBundle.default ?? globalThis.ajv2020?.default ?? globalThis.ajv2020;

// one instance for every schema; pydantic's `discriminator` (an OpenAPI annotation, with a
// mapping Ajv's own discriminator does not support) is an annotation here: `oneOf` decides
const ajv = new Ajv2020({ strict: true, allErrors: false });
ajv.addKeyword({ keyword: "discriminator" });

/** A validating function for `schema`: `validate(value)` is true or false, `validate.errors` says why. */
export function compile(schema) {
  return ajv.compile(schema);
}

/** Where and why the last validation failed, e.g. "at /training/learning_rate: must be > 0". */
export function explain(validate) {
  const e = validate.errors?.[0];
  if (!e) return "does not match its schema";
  const where = e.instancePath || "/";
  const params = e.keyword === "additionalProperties" ? ` (${e.params.additionalProperty})` : "";
  return `at ${where}: ${e.message}${params}`;
}

/** Length in code points, as Python's len() and JSON Schema's maxLength count (not UTF-16 units). */
export function codePointLength(text) {
  let pairs = 0;
  for (let i = 0; i < text.length - 1; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { pairs += 1; i += 1; }
    }
  }
  return text.length - pairs;
}

/**
 * JSON.parse, then what Python's parser refuses and JSON.parse accepts: a string or key with a
 * lone surrogate (escaped as \ud800), and objects and arrays nested deeper than `maxDepth` (the
 * top value is level 1). Throws Error with a message; callers turn it into their error code.
 */
export function parseJson(text, maxDepth = Infinity) {
  const value = JSON.parse(text);
  const stack = [[value, 1]];
  while (stack.length) {
    const [item, depth] = stack.pop();
    if (typeof item === "string") {
      if (!item.isWellFormed()) throw new Error("a string holds a lone surrogate (not Unicode text)");
      continue;
    }
    if (item === null || typeof item !== "object") continue;
    if (depth > maxDepth) throw new Error(`JSON nested deeper than ${maxDepth} levels`);
    for (const [key, child] of Object.entries(item)) {
      if (!Array.isArray(item) && !key.isWellFormed()) throw new Error("a key holds a lone surrogate (not Unicode text)");
      stack.push([child, depth + 1]);
    }
  }
  return value;
}
