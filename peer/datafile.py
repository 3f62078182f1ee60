"""Data files as people write them: CSV from any spreadsheet, ``.npz`` from NumPy or Keras.

One reader for the publisher (``apps/datasets.py``) and for a contributor's ``--data``
(``peer/node.py``), so both accept and refuse the same files with the same words.

* CSV is read with pandas after this module decides what pandas cannot: the text encoding
  (UTF-8 with or without BOM, UTF-16 with BOM, else Windows-1252 with a notice), the delimiter
  (``,`` ``;`` tab ``|``, sniffed; ``;`` files with decimal commas read ``1,5`` as 1.5) and
  whether the first row is a header (it is when a cell holds text where the next row holds a
  number). Quoting and CRLF are pandas'.
* ``.npz`` holds ``x``/``y``, or the Keras datasets' ``x_train``/``y_train`` with optional
  ``x_test``/``y_test`` (that split is then the test set).

Every refusal is a ``DataFileError`` naming the file, the cell (line and column, or array
index) and what to do. Labels are returned as they are in the file (numbers or text);
``publish_classes`` and ``swarm_classes`` turn them into class indices.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LABEL_NAMES = ("label", "labels", "target", "class", "y", "outcome", "species", "category")  # auto-detected label columns, in this order
MAX_CLASSES = 256
DELIMITERS = ",;\t|"
_NUMBER = re.compile(r"^\s*[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?\s*$|^\s*[+-]?(nan|inf|infinity)\s*$", re.IGNORECASE)


class DataFileError(ValueError):
    """A data file that cannot be used: the message names the file, the cell and the fix."""


@dataclass
class DataFile:
    """What a file holds: features ``x`` (N, ...), labels or targets ``y`` (N,) or (N, k) as
    written (numbers, or text as a ``str`` array), and where example ``i`` is in the file."""

    path: Path
    x: np.ndarray
    y: np.ndarray
    where: Callable[[int], str]  # example index -> "line 7" / "y_train[6]"
    label_desc: str  # "column 'label'" / "y_train"
    feature_names: list[str] | None = None
    test: DataFile | None = None
    notices: list[str] = field(default_factory=list)

    def refuse(self, i: int, what: str) -> DataFileError:
        return DataFileError(f"{self.path}: {self.where(i)}, {self.label_desc}: {what}")


# --- .npz ------------------------------------------------------------------------------


def read_npz(path: Path) -> DataFile:
    """``x``/``y``, or ``x_train``/``y_train`` (+ ``x_test``/``y_test``, then the test split)."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"{path} is not a .npz file of numeric arrays x and y: {exc}") from None
    with npz:
        names = set(npz.files)
        if {"x", "y"} <= names:
            pairs = [("x", "y")]
        elif {"x_train", "y_train"} <= names:
            pairs = [("x_train", "y_train")]
            if {"x_test", "y_test"} <= names:
                pairs.append(("x_test", "y_test"))
            elif names & {"x_test", "y_test"}:
                raise DataFileError(f"{path} has {sorted(names & {'x_test', 'y_test'})[0]} without its partner: "
                                    "give both x_test and y_test, or neither")  # fmt: skip
        else:
            raise DataFileError(f"{path} must hold arrays named x and y (np.savez(path, x=features, y=labels)), or "
                                f"x_train and y_train (and optionally x_test, y_test); found {sorted(names)}")  # fmt: skip
        try:
            arrays = [(xn, yn, npz[xn], npz[yn]) for xn, yn in pairs]
        except ValueError as exc:  # object arrays need pickle, which a data file must not run
            raise DataFileError(f"{path} holds Python objects ({exc}); save numbers, or text labels as a string array "
                                "(np.array(labels, dtype=str))") from None  # fmt: skip
    files = [_npz_part(path, xn, yn, x, y) for xn, yn, x, y in arrays]
    train = files[0]
    if len(files) == 2:
        train.test = files[1]
    return train


def _npz_part(path: Path, xn: str, yn: str, x: np.ndarray, y: np.ndarray) -> DataFile:
    if x.ndim < 2 or len(x) == 0 or x.dtype.kind not in "biuf":
        raise DataFileError(f"{path}: {xn} must be a non-empty numeric array of examples (n, ...), got {x.dtype} of shape {x.shape}")
    if y.ndim == 0 or len(y) != len(x):
        raise DataFileError(f"{path}: {len(x)} examples but {yn} has shape {y.shape}; one label (or target row) per example is needed")
    if y.dtype.kind not in "biufUS":
        raise DataFileError(f"{path}: {yn} must hold numbers or text labels, not {y.dtype}")
    _refuse_non_finite(path, x, lambda i: f"{xn}[{i}]")
    if y.dtype.kind == "S":
        y = y.astype(str)
    if y.dtype.kind == "U":
        y = np.char.strip(y)
    return DataFile(path, x, y, where=lambda i: f"{yn}[{i}]", label_desc=yn)


def _refuse_non_finite(path: Path, x: np.ndarray, where: Callable[[int], str]) -> None:
    if x.dtype.kind != "f":
        return
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(x.astype(np.float32))  # float64 beyond float32's range is infinite to the model
    if bad.any():
        flat = bad.reshape(len(x), -1)
        rows = np.unique(np.nonzero(flat)[0])
        first = int(rows[0])
        feature = int(np.flatnonzero(flat[first])[0])
        raise DataFileError(f"{path}: {int(bad.sum())} features are NaN or infinite (or beyond float32's range), in "
                            f"{len(rows)} examples (first: row {first}); drop or impute them before training "
                            f"({where(first)}, feature {feature}: {x.reshape(len(x), -1)[first, feature]})")  # fmt: skip


# --- CSV -------------------------------------------------------------------------------


@dataclass
class CsvText:
    """A CSV file decoded, its dialect decided: what pandas is given."""

    text: str
    delimiter: str
    decimal: str
    header: bool
    notices: list[str]


def decode_text(path: Path, data: bytes) -> tuple[str, list[str]]:
    """UTF-8 (a BOM dropped), UTF-16 with BOM, or else Windows-1252 (with a notice)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), []
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise DataFileError(f"{path}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}); save the CSV as UTF-8") from None
        return text, [f"{path}: not UTF-8 (byte {exc.start}); read as Windows-1252. Save it as UTF-8 to be sure of its text"]


def _first_records(text: str, delimiter: str, n: int = 2) -> list[list[str]]:
    sample = text[: 1 << 16]
    rows = []
    for row in csv.reader(io.StringIO(sample), delimiter=delimiter):
        if any(c.strip() for c in row):
            rows.append(row)
        if len(rows) == n:
            break
    return rows


def sniff_delimiter(text: str) -> str:
    """The delimiter of ``text`` among , ; tab |: csv.Sniffer on the first lines, else the most
    frequent one in the first line (a one-column file is comma-separated)."""
    lines = [l for l in text[: 1 << 16].splitlines() if l.strip()][:20]
    if not lines:
        return ","
    try:
        found = csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
        if found in DELIMITERS and lines[0].count(found) > 0:
            return found
    except csv.Error:
        pass
    counts = {d: lines[0].count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def is_number(cell: str) -> bool:
    return bool(_NUMBER.match(cell))


def looks_like_header(first: Sequence[str], second: Sequence[str] | None) -> bool:
    """A header has text where the data has numbers; a row like the next (numbers where it has
    numbers, text where it has text: string labels) is data."""
    if second is None:
        return not all(is_number(c) for c in first if c.strip())
    return any(not is_number(a) and is_number(b) for a, b in zip(first, second, strict=False))


def csv_dialect(path: Path, data: bytes) -> CsvText:
    text, notices = decode_text(path, data)
    delimiter = sniff_delimiter(text)
    head = _first_records(text, delimiter)
    if not head:
        raise DataFileError(f"{path}: the CSV holds no rows")
    decimal = "," if delimiter == ";" and re.search(r"(^|;)\s*-?\d+,\d+\s*(;|$)", text[: 1 << 16], re.MULTILINE) else "."
    header = looks_like_header(head[0], head[1] if len(head) > 1 else None)
    return CsvText(text, delimiter, decimal, header, notices)


def _data_lines(text: str, header: bool) -> list[int] | None:
    """The file line of each data row (1-based), or None when quoting makes lines and rows differ."""
    if '"' in text:
        lines, reader = [], csv.reader(io.StringIO(text))
        start = 1
        for row in reader:
            if any(c.strip() for c in row):
                lines.append(start)
            start = reader.line_num + 1
    else:
        lines = [n for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    return lines[1:] if header else lines


def read_csv_table(path: Path) -> tuple[object, CsvText, Callable[[int], str]]:
    """The CSV as a pandas DataFrame (columns named by the header, or 0..n-1), its dialect and
    ``where(i)``: "line L" of data row i."""
    import pandas as pd

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read it ({exc.strerror})") from None
    dialect = csv_dialect(path, data)
    try:
        frame = pd.read_csv(io.StringIO(dialect.text), sep=dialect.delimiter, decimal=dialect.decimal,
                            header=0 if dialect.header else None, skipinitialspace=True, skip_blank_lines=True,
                            dtype=None, engine="c")  # fmt: skip
    except pd.errors.ParserError as exc:
        detail = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if detail:
            want, line, got = detail.groups()
            raise DataFileError(f"{path}: line {line} has {got} cells, the lines before it {want} "
                                f"(delimiter {dialect.delimiter!r}); every row needs the same columns") from None  # fmt: skip
        raise DataFileError(f"{path}: not a readable CSV ({str(exc).strip()[:200]})") from None
    except pd.errors.EmptyDataError:
        raise DataFileError(f"{path}: the CSV holds no rows") from None
    lines = _data_lines(dialect.text, dialect.header)
    if lines is not None and len(lines) != len(frame):
        lines = None
    offset = 2 if dialect.header else 1

    def where(i: int) -> str:
        return f"line {lines[i]}" if lines is not None else f"data row {i + 1} (line {i + offset} if no row spans lines)"

    return frame, dialect, where


def column_desc(name: object, index: int, header: bool) -> str:
    return f"column {name!r} (column {index + 1})" if header else f"column {index + 1}"


def resolve_label_column(path: Path, columns: list[object], header: bool, wanted: str | None) -> int | None:
    """The label column's index: a header name, an index (negative counts from the end), or with
    ``wanted`` None the first header name in ``LABEL_NAMES``; None if there is no such column."""
    if wanted is not None and wanted not in ("", "auto"):
        if header and wanted in columns:
            return columns.index(wanted)
        if header:
            folded = [str(c).strip().lower() for c in columns]
            if wanted.strip().lower() in folded:
                return folded.index(wanted.strip().lower())
        if re.fullmatch(r"-?\d+", wanted.strip()):
            index = int(wanted)
            if -len(columns) <= index < len(columns):
                return index % len(columns)
        shown = [str(c) for c in columns[:12]] if header else f"no header row, {len(columns)} columns"
        raise DataFileError(f"{path}: no label column {wanted!r} (the file has {shown}); give its name or a 0-based "
                            "index (-1: the last column)")  # fmt: skip
    if header:
        folded = [str(c).strip().lower() for c in columns]
        for name in LABEL_NAMES:
            if name in folded:
                return folded.index(name)
    return None


def read_csv(path: Path, label_column: str | None, choose: Callable[[object, list[int]], int | None] | None = None) -> DataFile:
    """A CSV whose label column is ``label_column`` (name or index; None: named label, target,
    class, y or outcome, else ``choose(frame, candidates)`` may pick one), every other column a
    numeric feature. Missing values and text features are refused naming their cell."""
    frame, dialect, where = read_csv_table(path)
    columns = list(frame.columns)  # type: ignore[attr-defined]
    if len(columns) < 2:
        raise DataFileError(f"{path}: one column only (delimiter {dialect.delimiter!r}); a dataset needs features and a "
                            "label column, separated by , ; tab or |")  # fmt: skip
    notices = list(dialect.notices)
    col = resolve_label_column(path, columns, dialect.header, label_column)
    if col is None and choose is not None:
        col = choose(frame, [0, len(columns) - 1])
        if col is not None:
            notices.append(f"{path}: no column is named label: the labels are {column_desc(columns[col], col, dialect.header)}, "
                           "the only first or last column holding this swarm's labels")  # fmt: skip
    if col is None:
        found = f"the header has {[str(c) for c in columns[:12]]}" if dialect.header else "it has no header row"
        raise DataFileError(f"{path}: which column holds the label? {found}. Name it 'label' in a header row, or give "
                            "--label-column NAME or a 0-based INDEX (-1: the last column)")  # fmt: skip
    _refuse_missing(path, frame, dialect.header, where)
    features = [i for i in range(len(columns)) if i != col]
    values = []
    for i in features:
        values.append(_numeric_column(path, frame.iloc[:, i], column_desc(columns[i], i, dialect.header), where))  # type: ignore[attr-defined]
    x = np.stack(values, axis=1)
    notice = _saved_index_notice(path, columns, dialect.header, frame, col)
    if notice:
        notices.append(notice)
    y = _label_values(frame.iloc[:, col])  # type: ignore[attr-defined]
    names = [str(columns[i]) for i in features] if dialect.header else None
    return DataFile(path, x, y, where=where, label_desc=column_desc(columns[col], col, dialect.header),
                    feature_names=names, notices=notices)  # fmt: skip


def _refuse_missing(path: Path, frame: object, header: bool, where: Callable[[int], str]) -> None:
    missing = frame.isna().to_numpy()  # type: ignore[attr-defined]
    if missing.any():
        row, col = (int(v) for v in np.argwhere(missing)[0])
        columns = list(frame.columns)  # type: ignore[attr-defined]
        raise DataFileError(f"{path}: {where(row)}, {column_desc(columns[col], col, header)} is empty or NA "
                            f"({int(missing.sum())} missing values in {int(missing.any(axis=1).sum())} rows); "
                            "fill them in or drop those rows")  # fmt: skip


def _numeric_column(path: Path, column: object, desc: str, where: Callable[[int], str]) -> np.ndarray:
    import pandas as pd

    series = column
    if series.dtype == bool:  # type: ignore[attr-defined]
        return series.to_numpy(dtype=np.int64)  # type: ignore[attr-defined]
    if series.dtype.kind in "iuf":  # type: ignore[attr-defined]
        values = series.to_numpy()  # type: ignore[attr-defined]
    else:
        numbers = pd.to_numeric(series, errors="coerce")
        bad = np.flatnonzero(numbers.isna().to_numpy())
        if len(bad):
            i = int(bad[0])
            raise DataFileError(f"{path}: {where(i)}, {desc}: {str(series.iloc[i])[:40]!r} is not a number; every "  # type: ignore[attr-defined]
                                "column but the label must be numeric (encode categories as numbers first)")  # fmt: skip
        values = numbers.to_numpy()
    if values.dtype.kind == "f":
        with np.errstate(over="ignore"):
            bad = np.flatnonzero(~np.isfinite(values.astype(np.float32)))
        if len(bad):
            i = int(bad[0])
            raise DataFileError(f"{path}: {where(i)}, {desc}: {values[i]} is not a finite number (or beyond float32's "
                                "range); drop or impute it before training")  # fmt: skip
    return values


def _label_values(column: object) -> np.ndarray:
    series = column
    if series.dtype.kind in "biuf":  # type: ignore[attr-defined]
        return series.to_numpy()  # type: ignore[attr-defined]
    return np.char.strip(series.astype(str).to_numpy(dtype=str))  # type: ignore[attr-defined]


def _saved_index_notice(path: Path, columns: list[object], header: bool, frame: object, label: int) -> str | None:
    """A first column without a name counting up (``df.to_csv`` without ``index=False``)."""
    if not header or label == 0 or not str(columns[0]).startswith("Unnamed: 0"):
        return None
    first = frame.iloc[:, 0].to_numpy()  # type: ignore[attr-defined]
    if first.dtype.kind not in "iu" or len(first) < 2 or not np.all(np.diff(first) > 0):
        return None
    return (f"{path}: the first column has no name and counts up ({first[0]}, {first[1]}, ...): it looks like a saved "
            "DataFrame index (df.to_csv without index=False) and is used as a feature. Drop it, or save with "
            "df.to_csv(path, index=False)")  # fmt: skip


def read_data_file(path: Path, label_column: str | None = None,
                   choose: Callable[[object, list[int]], int | None] | None = None) -> DataFile:  # fmt: skip
    """An ``.npz`` or ``.csv`` data file (see the module docstring)."""
    if not path.is_file():
        raise DataFileError(f"dataset {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_npz(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return read_csv(path, label_column, choose)
    raise DataFileError(f"dataset {path}: use an .npz file (x, y or x_train, y_train) or a .csv with a label column")


# --- features: the published scaling -----------------------------------------------------


def pixel_values(x: np.ndarray) -> bool:
    """Whole numbers in 0..255 that go above 1: what images hold (a 0/1 feature is not a pixel)."""
    if x.dtype == np.uint8:
        return True
    if x.dtype.kind not in "iuf" or x.size == 0:
        return False
    low, high = x.min(), x.max()
    return bool(low >= 0 and 1 < high <= 255 and (x.dtype.kind in "iu" or np.all(x == np.round(x))))


# --- labels: class indices ---------------------------------------------------------------


@dataclass(frozen=True)
class Classes:
    """Class indices of every example, and the names of classes 0..K-1 when the file had names."""

    y: np.ndarray  # uint8 (N,)
    names: list[str] | None
    notices: tuple[str, ...] = ()


def one_label_per_example(data: DataFile, y: np.ndarray, classes: int | None = None) -> np.ndarray:
    """(N,) labels: (N, 1) squeezed, one-hot rows turned into their index; else refused."""
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim == 2 and y.dtype.kind in "biuf" and _is_one_hot(y):
        if classes is not None and y.shape[1] != classes:
            raise DataFileError(f"{data.path}: {data.label_desc} is one-hot with {y.shape[1]} columns, the model has {classes} classes")
        return y.argmax(axis=1)
    if y.ndim != 1:
        raise DataFileError(f"{data.path}: {data.label_desc} has shape {y.shape}; one class label per example is needed "
                            "(shape (N,) or (N, 1), or one-hot rows)")  # fmt: skip
    return y


def _is_one_hot(y: np.ndarray) -> bool:
    return bool(y.shape[1] > 1 and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))


def _whole_numbers(data: DataFile, y: np.ndarray, hint: str) -> np.ndarray:
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            i = int(bad[0])
            raise data.refuse(i, f"label {y[i]} is not a class: labels must be whole class indices{hint}")
    return y.astype(np.int64)


def _text_labels(data: DataFile, y: np.ndarray) -> np.ndarray:
    empty = np.flatnonzero(np.char.str_len(y) == 0)
    if len(empty):
        raise data.refuse(int(empty[0]), "the label is empty; fill it in or drop the row")
    return y


def publish_classes(data: DataFile, y: np.ndarray | None = None) -> Classes:
    """Class indices for publishing. Text labels become 0..K-1 in sorted order, their names kept;
    integer labels from 0 stay as they are; integer labels not starting at 0 (1..K, or -1/1)
    become 0..K-1 in sorted order with their values as names, and a notice says so."""
    y = one_label_per_example(data, data.y if y is None else y)
    hint = "; for regression on float targets publish with --loss mean_squared_error or mean_absolute_error"
    if y.dtype.kind in "US":
        names, index = np.unique(_text_labels(data, y), return_inverse=True)
        _refuse_too_many(data, len(names))
        return Classes(index.astype(np.uint8), [str(n) for n in names])
    labels = _whole_numbers(data, y, hint)
    low, high = int(labels.min()), int(labels.max())
    if low == 0:
        if high >= MAX_CLASSES:
            i = int(np.argmax(labels))
            raise data.refuse(i, f"label {high} is above {MAX_CLASSES - 1}; peers train at most {MAX_CLASSES} classes")
        return Classes(labels.astype(np.uint8), None)
    values, index = np.unique(labels, return_inverse=True)
    _refuse_too_many(data, len(values))
    names = [str(int(v)) for v in values]
    shown = f"{low}..{high}" if len(values) == high - low + 1 else ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    notice = (f"{data.path}: labels {shown} do not start at 0: published as classes 0..{len(values) - 1} "
              f"({names[0]} -> 0, ..., {names[-1]} -> {len(values) - 1}); the manifest keeps the names ({shown}), "
              "which predictions show and contributors' files may use")  # fmt: skip
    return Classes(index.astype(np.uint8), names, (notice,))


def _refuse_too_many(data: DataFile, n: int) -> None:
    if n > MAX_CLASSES:
        raise DataFileError(f"{data.path}: {data.label_desc} has {n} distinct labels; peers train at most {MAX_CLASSES} "
                            "classes. Is it the right column? For regression publish with --loss mean_squared_error")  # fmt: skip
    if n < 2:
        raise DataFileError(f"{data.path}: {data.label_desc} holds one class only; a classifier needs at least 2")


def swarm_classes(data: DataFile, classes: int, names: list[str] | None, y: np.ndarray | None = None) -> np.ndarray:
    """A contributor's labels as this swarm's class indices 0..classes-1 (int64).

    With class names in the manifest, labels are matched by name (numbers too, when the names
    are numbers: a swarm published from labels 1..K takes 1..K); otherwise labels are indices,
    and 1..K is refused with the fix.
    """
    y = one_label_per_example(data, data.y if y is None else y, classes)
    numeric_names = names is not None and all(is_number(n) for n in names)
    if y.dtype.kind in "US" or numeric_names:
        return _by_name(data, y, classes, names)
    labels = _whole_numbers(data, y, "")
    low, high = int(labels.min()), int(labels.max())
    if low >= 1 and high == classes:
        raise DataFileError(f"{data.path}: labels run {low}..{high}, but this model's {classes} classes are "
                            f"0..{classes - 1}: subtract 1 (y = y - 1)")  # fmt: skip
    if low < 0 or high >= classes:
        i = int(np.flatnonzero((labels < 0) | (labels >= classes))[0])
        raise DataFileError(f"{data.path}: labels in [{low}, {high}] are not classes of this model (0..{classes - 1}); "
                            f"first: {data.where(i)}, {data.label_desc}: {labels[i]}")  # fmt: skip
    return labels


def _by_name(data: DataFile, y: np.ndarray, classes: int, names: list[str] | None) -> np.ndarray:
    if names is None:
        raise data.refuse(0, f"text labels such as {str(y[0])!r}, but this swarm's classes have no names: label "
                             f"rows by class index 0..{classes - 1}")  # fmt: skip
    if y.dtype.kind in "biuf":
        y = np.asarray([str(int(v)) if float(v).is_integer() else str(v) for v in y])
    else:
        y = _text_labels(data, y)
    lookup = {n: i for i, n in enumerate(names)}
    index = np.asarray([lookup.get(str(v), -1) for v in y], dtype=np.int64)
    bad = np.flatnonzero(index < 0)
    if len(bad):
        i = int(bad[0])
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise data.refuse(i, f"label {str(y[i])!r} is not a class of this swarm (its classes: {shown})")
    return index
