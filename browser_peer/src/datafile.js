// A contributor's CSV in the tab ("train on my own data"), read by the rules of peer/datafile.py
// and fitted to the swarm as peer/localdata.py fits `swarm join --data`, so a file is accepted,
// refused and scaled the same in Python and in the browser (tests/test_js_datafile.py reads the
// same files with both).
//
// Parsing (quotes, CRLF, quoted delimiters and newlines) is Papa Parse (papaparse 5.7.1, pinned in
// package.json, loaded by index.html from node_modules as a classic script: its UMD bundle
// defines `Papa`). This module decides what a parser cannot guess, as peer/datafile.py does
// for pandas: the text encoding, the delimiter, whether the first row is a header, the label
// column, the class of every label and the published scaling of 0..255 pixel values.

export class DataFileError extends Error {}

// auto-detected label columns, in this order (peer/datafile.py LABEL_NAMES)
export const LABEL_NAMES = ["label", "labels", "target", "class", "y", "outcome", "species", "category"];
const DELIMITERS = [",", ";", "\t", "|"];
const PREFERRED = [",", "\t", ";"]; // csv.Sniffer's preference when several are consistent
const NUMBER = /^\s*[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?\s*$|^\s*[+-]?(nan|inf|infinity)\s*$/i;
// pandas' default NA strings: a cell holding one is missing, as read_csv reads it
const MISSING = new Set(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
  "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]);
const TRUE = new Set(["True", "TRUE", "true"]);
const FALSE = new Set(["False", "FALSE", "false"]);

function papa() {
  const Papa = globalThis.Papa;
  if (!Papa) throw new Error("Papa Parse is not loaded (index.html loads node_modules/papaparse/papaparse.min.js)");
  return Papa;
}

export const isNumber = (cell) => NUMBER.test(cell);

/** UTF-8 (a BOM dropped), UTF-16 with BOM, else Windows-1252 with a notice (peer/datafile.py decode_text). */
export function decodeText(bytes) {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return { text: new TextDecoder("utf-16le").decode(bytes.subarray(2)), notices: [] };
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return { text: new TextDecoder("utf-16be").decode(bytes.subarray(2)), notices: [] };
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), notices: [] }; // ignoreBOM false: a BOM is dropped
  } catch {
    return { text: new TextDecoder("windows-1252").decode(bytes), notices: ["not UTF-8; read as Windows-1252. Save it as UTF-8 to be sure of its text"] };
  }
}

/**
 * The delimiter among , ; tab |, as csv.Sniffer decides it: the ones whose count per line is the
 * same (its mode) on the most lines (at least 90%) of the first 20; several: , then tab then ;;
 * none: the most frequent in the first line (a one-column file is comma-separated).
 */
export function sniffDelimiter(text) {
  const lines = text.slice(0, 1 << 16).split(/\r\n|\n|\r/).filter((l) => l.trim()).slice(0, 20);
  if (lines.length === 0) return ",";
  const consistency = new Map();
  for (const d of DELIMITERS) {
    const counts = new Map();
    for (const line of lines) { const c = line.split(d).length - 1; counts.set(c, (counts.get(c) || 0) + 1); }
    const [mode, lines_] = [...counts].reduce((a, b) => (b[1] > a[1] || (b[1] === a[1] && b[0] > a[0]) ? b : a));
    if (mode > 0) consistency.set(d, lines_ / lines.length);
  }
  let found = [];
  for (let c = 1.0; c >= 0.9 - 1e-9 && found.length === 0; c -= 0.01) found = DELIMITERS.filter((d) => consistency.get(d) >= c - 1e-9);
  const pick = found.length === 1 ? found[0] : PREFERRED.find((d) => found.includes(d)) || found[0];
  if (pick && lines[0].includes(pick)) return pick;
  const best = DELIMITERS.reduce((a, b) => (lines[0].split(b).length > lines[0].split(a).length ? b : a));
  return lines[0].includes(best) ? best : ",";
}

/** A header has text where the data has numbers; a row like the next one (text labels) is data. */
export function looksLikeHeader(first, second) {
  if (!second) return !first.filter((c) => c.trim()).every(isNumber);
  return first.some((a, i) => i < second.length && !isNumber(a) && isNumber(second[i]));
}

const columnDesc = (name, index, header) => (header ? `column '${name}' (column ${index + 1})` : `column ${index + 1}`);

/** Rows of the text and the file line each starts on (rows may span lines inside quotes). */
function parseRows(text, delimiter) {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n") starts.push(i + 1);
  const lineAt = (offset) => { // 1-based line of a character offset
    let [lo, hi] = [0, starts.length - 1];
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= offset) lo = mid; else hi = mid - 1; }
    return lo + 1;
  };
  const rows = [];
  const lines = [];
  let cursor = 0;
  let error = null;
  papa().parse(text, {
    delimiter, quoteChar: '"', skipEmptyLines: "greedy",
    step: (result) => {
      if (result.errors.length && !error) error = [result.errors[0], rows.length];
      let start = cursor;
      while (start < text.length && /\s/.test(text[start])) start++;
      rows.push(result.data);
      lines.push(lineAt(start));
      cursor = result.meta.cursor;
    },
  });
  if (error && error[0].type === "Quotes") {
    throw new DataFileError(`line ${lines[error[1]] || "?"}: a quoted cell is not closed (${error[0].message}); close its quote or remove it`);
  }
  return { rows: rows.map((r) => r.map((c) => c.trim())), lines };
}

/**
 * Read a CSV as peer/datafile.py read_csv does: {x (n*width float64, row-major), width, n, y (the
 * label cells: numbers, or text when any is not a number), numericLabels, where(i) ("line 7"),
 * labelDesc, labelIndex, featureNames, notices}. `choose(column(i), [0, last])` picks the label
 * column when no header names one (the swarm's labels decide, peer/localdata.py).
 */
export function readCsv(bytes, { choose = null } = {}) {
  const { text, notices } = decodeText(bytes);
  const delimiter = sniffDelimiter(text);
  const decimal = delimiter === ";" && /(^|;)\s*-?\d+,\d+\s*(;|$)/m.test(text.slice(0, 1 << 16)) ? "," : ".";
  let { rows, lines } = parseRows(text, delimiter);
  if (rows.length === 0) throw new DataFileError("the CSV holds no rows");
  const header = looksLikeHeader(rows[0], rows[1]);
  const width = rows[0].length;
  const columns = header ? rows[0].map((c, i) => c || `Unnamed: ${i}`) : rows[0].map((_, i) => i);
  if (header) { rows = rows.slice(1); lines = lines.slice(1); }
  if (rows.length === 0) throw new DataFileError("the CSV has a header row and no data");
  const where = (i) => `line ${lines[i]}`;
  rows.forEach((row, i) => {
    if (row.length > width) {
      throw new DataFileError(`line ${lines[i]} has ${row.length} cells, the lines before it ${width} ` +
        `(delimiter '${delimiter === "\t" ? "\\t" : delimiter}'); every row needs the same columns`);
    }
  });
  if (width < 2) {
    throw new DataFileError(`one column only (delimiter '${delimiter}'); a dataset needs features and a label column, separated by , ; tab or |`);
  }
  const cell = (r, c) => (c < rows[r].length ? rows[r][c] : "");
  const column = (c) => rows.map((_, r) => cell(r, c));
  let label = null;
  if (header) {
    const folded = columns.map((c) => String(c).trim().toLowerCase());
    const name = LABEL_NAMES.find((n) => folded.includes(n));
    if (name) label = folded.indexOf(name);
  }
  if (label === null && choose) {
    label = choose(column, [0, width - 1]);
    if (label !== null) {
      notices.push(`no column is named label: the labels are ${columnDesc(columns[label], label, header)}, the only first or last column holding this swarm's labels`);
    }
  }
  if (label === null) {
    const found = header ? `the header has [${columns.slice(0, 12).map((c) => `'${c}'`).join(", ")}]` : "it has no header row";
    throw new DataFileError(`which column holds the label? ${found}. Name it 'label' in a header row, ` +
      "or put the labels in the first or last column");
  }
  refuseMissing(rows, width, columns, header, where);
  const features = [...Array(width).keys()].filter((c) => c !== label);
  const x = new Float64Array(rows.length * features.length);
  features.forEach((c, k) => {
    const values = numericColumn(column(c), decimal, columnDesc(columns[c], c, header), where);
    values.forEach((v, r) => { x[r * features.length + k] = v; });
  });
  const index = savedIndexNotice(columns, header, column(0), label);
  if (index) notices.push(index);
  const cells = column(label);
  const numericLabels = cells.every((v) => parseNumber(v, decimal) !== null);
  const y = numericLabels ? cells.map((v) => parseNumber(v, decimal)) : cells;
  return {
    x, width: features.length, n: rows.length, y, numericLabels, where, labelIndex: label,
    labelDesc: columnDesc(columns[label], label, header), featureNames: header ? features.map((c) => String(columns[c])) : null,
    notices, header, delimiter, decimal,
  };
}

function refuseMissing(rows, width, columns, header, where) {
  let first = null;
  let count = 0;
  let inRows = 0;
  rows.forEach((row, r) => {
    let here = 0;
    for (let c = 0; c < width; c++) {
      if (c >= row.length || MISSING.has(row[c])) { here++; if (!first) first = [r, c]; }
    }
    count += here;
    if (here) inRows++;
  });
  if (first) {
    const [r, c] = first;
    throw new DataFileError(`${where(r)}, ${columnDesc(columns[c], c, header)} is empty or NA (${count} missing values in ` +
      `${inRows} rows); fill them in or drop those rows`);
  }
}

/** A number as pandas reads it with this decimal mark, or null (infinity allowed: refused later). */
function parseNumber(cell, decimal) {
  const s = decimal === "," ? cell.replace(",", ".") : cell;
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity)$/i.test(s)) return null;
  const lower = s.toLowerCase();
  return lower.endsWith("inf") || lower.endsWith("infinity") ? (s[0] === "-" ? -Infinity : Infinity) : Number(s);
}

function numericColumn(cells, decimal, desc, where) {
  if (cells.every((v) => TRUE.has(v) || FALSE.has(v))) return cells.map((v) => (TRUE.has(v) ? 1 : 0));
  return cells.map((v, r) => {
    const n = parseNumber(v, decimal);
    if (n === null) {
      throw new DataFileError(`${where(r)}, ${desc}: '${v.slice(0, 40)}' is not a number; every column but the label ` +
        "must be numeric (encode categories as numbers first)");
    }
    if (!Number.isFinite(Math.fround(n))) {
      throw new DataFileError(`${where(r)}, ${desc}: ${n} is not a finite number (or beyond float32's range); drop or impute it before training`);
    }
    return n;
  });
}

function savedIndexNotice(columns, header, first, label) {
  if (!header || label === 0 || !String(columns[0]).startsWith("Unnamed: 0")) return null;
  if (first.length < 2 || !first.every((v) => /^[+-]?\d+$/.test(v))) return null;
  const v = first.map(Number);
  if (!v.every((a, i) => i === 0 || a > v[i - 1])) return null;
  return `the first column has no name and counts up (${v[0]}, ${v[1]}, ...): it looks like a saved DataFrame index ` +
    "(df.to_csv without index=False) and is used as a feature. Drop it, or save with df.to_csv(path, index=False)";
}

/** Whole numbers in 0..255 that go above 1: what images hold (peer/datafile.py pixel_values). */
export function pixelValues(x) {
  if (x instanceof Uint8Array) return true;
  if (x.length === 0) return false;
  let [low, high] = [Infinity, -Infinity];
  for (const v of x) {
    if (!Number.isInteger(v)) return false;
    if (v < low) low = v;
    if (v > high) high = v;
  }
  return low >= 0 && high > 1 && high <= 255;
}

/**
 * What a contributor's file must fit, from the trainer of a running tab: the model's input shape,
 * its classes (null for regression), their names, the output width, and whether the swarm's
 * features are uint8 pixels (its test shard's; null without a published dataset: the file decides).
 */
export function swarmOf(trainer) {
  return {
    inputShape: trainer.inputShape, numClasses: trainer.numClasses, classNames: trainer.classNames,
    outWidth: trainer.outWidth, pixels: trainer.test ? Boolean(trainer.test.pixels) : null,
  };
}

/** The input shape of a layers topology (its first layer's batch input shape, batch dimension
 * dropped), or null when the topology does not state it; mirrors signaling/publishing.py _input_shape. */
export function topologyInputShape(topology) {
  const inner = topology?.model_config ?? topology;
  const cfg = inner?.config?.layers?.[0]?.config ?? {};
  const shape = cfg.batch_input_shape ?? cfg.batchInputShape ?? cfg.batch_shape;
  return Array.isArray(shape) && shape.length > 1 && shape.slice(1).every((d) => Number.isInteger(d) && d > 0) ? shape.slice(1) : null;
}

/**
 * What a CSV must fit before any trainer exists (a swarm that publishes no dataset): as swarmOf,
 * from the manifest; `numClassesOf` is trainer.js's rule (passed in: this module needs no TF.js).
 */
export function swarmOfManifest(manifest, numClassesOf) {
  const inputShape = topologyInputShape(manifest.model.topology);
  if (!inputShape) throw new DataFileError("the published model does not state its input shape, so no CSV can be checked against it");
  const outWidth = manifest.model.weights.at(-1).shape.at(-1);
  return { inputShape, numClasses: numClassesOf(manifest, outWidth), classNames: manifest.dataset?.class_names ?? null, outWidth, pixels: null };
}

const stringOf = (v) => (typeof v === "number" ? String(v) : String(v).trim());

/** For a file with no column named label: the first or last column, if only it holds the swarm's labels. */
export function labelChooser({ numClasses, classNames }) {
  const fits = (cells) => {
    if (cells.some((v) => MISSING.has(v))) return false;
    if (classNames) return cells.every((v) => classNames.includes(stringOf(numberOrText(v))));
    return cells.every((v) => /^\+?\d+(\.0*)?$/.test(v) && Number(v) < numClasses);
  };
  return (column, candidates) => {
    if (numClasses === null) return candidates.at(-1); // regression: the targets are the last column
    const ok = [...new Set(candidates)].filter((c) => fits(column(c)));
    const varied = ok.filter((c) => new Set(column(c)).size > 1);
    const pick = varied.length ? varied : ok;
    return pick.length === 1 ? pick[0] : null;
  };
}

function numberOrText(v) {
  const n = parseNumber(v, ".");
  return n === null ? v : n;
}

/**
 * A contributor's CSV (bytes) as training examples of this swarm: {x (Float32Array, as the
 * model sees it), y (class indices Uint8Array, or float32 targets), n, shape, targets (0 or the
 * width), pixels, notices}; a DataFileError naming the cell and the fix otherwise.
 */
export function readOwnCsv(bytes, swarm) {
  const data = readCsv(bytes, { choose: labelChooser(swarm) });
  const per = swarm.inputShape.reduce((a, b) => a * b, 1);
  if (data.width !== per) {
    throw new DataFileError(`rows have ${data.width} features besides the label (${data.labelDesc}), but this model takes ` +
      `${per} (input shape [${swarm.inputShape.join(", ")}]); every row needs ${per} features and a label`);
  }
  const pixels = swarm.pixels === null ? pixelValues(data.x) : swarm.pixels;
  const scaled = pixels && pixelValues(data.x);
  const x = new Float32Array(data.x.length);
  for (let i = 0; i < x.length; i++) x[i] = scaled ? data.x[i] / 255 : data.x[i]; // as dataset.js decodes uint8 shards
  if (scaled) data.notices.push("whole numbers 0..255 read as pixel values: scaled by 1/255, as the swarm's shards are");
  const out = { x, n: data.n, shape: swarm.inputShape, pixels: scaled, notices: data.notices };
  if (swarm.numClasses === null) return { ...out, y: regressionTargets(data, swarm.outWidth), targets: swarm.outWidth };
  return { ...out, y: swarmClasses(data, swarm.numClasses, swarm.classNames), targets: 0 };
}

const refuse = (data, i, what) => new DataFileError(`${data.where(i)}, ${data.labelDesc}: ${what}`);

function regressionTargets(data, outWidth) {
  if (!data.numericLabels) {
    const i = data.y.findIndex((v) => parseNumber(v, data.decimal) === null);
    throw refuse(data, i, `'${data.y[i]}' is not a number; this swarm trains on numeric targets (regression)`);
  }
  if (outWidth !== 1) throw new DataFileError(`${data.labelDesc} gives 1 target per example, the model outputs ${outWidth}`);
  const y = Float32Array.from(data.y);
  const bad = y.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw refuse(data, bad, "the target is NaN or infinite (or beyond float32's range); drop or impute it");
  return y;
}

/** Labels as this swarm's class indices (peer/datafile.py swarm_classes): by name when it names them. */
function swarmClasses(data, classes, names) {
  const numericNames = names && names.every(isNumber);
  if (!data.numericLabels || numericNames) return byName(data, classes, names);
  const bad = data.y.findIndex((v) => !Number.isInteger(v));
  if (bad >= 0) throw refuse(data, bad, `label ${data.y[bad]} is not a class: labels must be whole class indices`);
  const low = data.y.reduce((a, b) => Math.min(a, b), Infinity);
  const high = data.y.reduce((a, b) => Math.max(a, b), -Infinity);
  if (low >= 1 && high === classes) {
    throw new DataFileError(`labels run ${low}..${high}, but this model's ${classes} classes are 0..${classes - 1}: subtract 1 (y = y - 1)`);
  }
  if (low < 0 || high >= classes) {
    const i = data.y.findIndex((v) => v < 0 || v >= classes);
    throw new DataFileError(`labels in [${low}, ${high}] are not classes of this model (0..${classes - 1}); first: ` +
      `${data.where(i)}, ${data.labelDesc}: ${data.y[i]}`);
  }
  return Uint8Array.from(data.y);
}

function byName(data, classes, names) {
  if (!names) {
    throw refuse(data, 0, `text labels such as '${data.y[0]}', but this swarm's classes have no names: label rows by class index 0..${classes - 1}`);
  }
  const lookup = new Map(names.map((n, i) => [n, i]));
  const y = new Uint8Array(data.n);
  data.y.forEach((v, i) => {
    const k = lookup.get(stringOf(v));
    if (k === undefined) {
      const shown = names.slice(0, 10).join(", ") + (names.length > 10 ? ", ..." : "");
      throw refuse(data, i, `label '${stringOf(v)}' is not a class of this swarm (its classes: ${shown})`);
    }
    y[i] = k;
  });
  return y;
}
