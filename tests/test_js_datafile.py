"""The tab's CSV picker (browser_peer/src/datafile.js, Papa Parse) reads files as `swarm join
--data` does (peer/datafile.py with pandas, fitted by peer/localdata.py): the same features bit
for bit (0..255 pixels scaled as uint8 shards are), the same class indices or float32 targets,
and the same refusal naming the cell, for every file here, each written as people write them.
"""

from __future__ import annotations

import codecs
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from peer.datafile import pixel_values, read_data_file, swarm_classes
from peer.localdata import _features, _label_chooser, regression_targets

ROOT = Path(__file__).resolve().parent.parent
READER = ROOT / "browser_peer" / "tests" / "datafile_read.js"
RNG = np.random.default_rng(3)
PIX = RNG.integers(0, 256, size=(6, 4))
PIX[:, -1] = 0  # a constant corner pixel: no label column


def _rows(rows: list[list[object]], sep: str = ",") -> str:
    return "".join(sep.join(str(c) for c in r) + "\n" for r in rows)


def swarm(shape: int, classes: int | None, names: list[str] | None = None, pixels: bool | None = None, out: int | None = None) -> dict[str, Any]:
    return {"inputShape": [shape], "numClasses": classes, "classNames": names, "outWidth": out or classes or 1, "pixels": pixels}


LABELS = [3, 1, 0, 2, 1, 0]
FLOATS = RNG.normal(size=(6, 3)).round(4)
# (name, file bytes, the swarm it must fit, None if both accept it, else a phrase both refusals hold)
CASES: list[tuple[str, bytes, dict[str, Any], str | None]] = [
    ("kaggle", _rows([["label", *(f"pixel{i}" for i in range(4))], *([l, *p] for l, p in zip(LABELS, PIX))]).encode(), swarm(4, 4, pixels=True), None),
    ("headerless-label-first", _rows([[l, *p] for l, p in zip(LABELS, PIX)]).encode(), swarm(4, 4, pixels=True), None),
    ("label-last-unscaled-float-swarm", _rows([["a", "b", "c", "d", "y"], *([*p, l] for l, p in zip(LABELS, PIX))]).encode(), swarm(4, 4, pixels=False), None),
    ("no-dataset-decides-by-file", _rows([[*p, l] for l, p in zip(LABELS, PIX)]).encode(), swarm(4, 4), None),
    ("bom-semicolon-decimal-comma-names", codecs.BOM_UTF8 + _rows([["a", "b", "class"], ["1,5", "2", "cat"], ["3,25", "-4", "dog"], ["0,5", "1e2", "cat"]], ";").encode(),
     swarm(2, 2, ["cat", "dog"], pixels=False), None),
    ("crlf-quoted", b'f1,f2,species\r\n0.5,"1.5","big, cat"\r\n2,3,dog\r\n', swarm(2, 2, ["big, cat", "dog"], pixels=False), None),
    ("tab-target-in-the-middle", _rows([["u", "target", "v"], [0.1, 1, 0.2], [0.3, 0, 0.4]], "\t").encode(), swarm(2, 2, pixels=False), None),
    ("utf16", codecs.BOM_UTF16_LE + _rows([["x1", "x2", "label"], [1.25, 2, "no"], [3, 4.5, "yes"]]).encode("utf-16-le"), swarm(2, 2, ["no", "yes"], pixels=False), None),
    ("cp1252", _rows([["caf\u00e9", "b", "label"], [0.5, 1, 0], [0.25, 2, 1]]).encode("cp1252"), swarm(2, 2, pixels=False), None),
    ("regression", _rows([["f0", "f1", "price"], *([a, b, t] for a, b, t in FLOATS)]).encode(), swarm(2, None, pixels=False), None),
    ("regression-headerless-last", _rows([[a, b, t] for a, b, t in FLOATS]).encode(), swarm(2, None), None),
    ("numeric-names-1-to-3", _rows([["a", "label"], [0.5, 1], [0.7, 3], [0.1, 2]]).encode(), swarm(1, 3, ["1", "2", "3"], pixels=False), None),
    ("saved-index", _rows([["", "a", "label"], [0, 0.5, 1], [1, 0.7, 0], [2, 0.1, 1]]).encode(), swarm(2, 2, pixels=False), None),
    ("1-to-K", _rows([["a", "label"], [0.5, 1], [0.7, 3], [0.1, 2]]).encode(), swarm(1, 3, pixels=False), "labels run 1..3, but this model's 3 classes are 0..2: subtract 1"),
    ("missing", _rows([["a", "b", "label"], [1, 2, 0], [3, "", 1], [5, "NA", 1]]).encode(), swarm(2, 2, pixels=False),
     "line 3, column 'b' (column 2) is empty or NA (2 missing values in 2 rows); fill them in or drop those rows"),
    ("text-feature", _rows([["a", "b", "label"], [1, 2, 0], [3, "tall", 1]]).encode(), swarm(2, 2, pixels=False),
     "line 3, column 'b' (column 2): 'tall' is not a number; every column but the label must be numeric"),
    ("too-wide", _rows([["a", "b", "label"], [1, 2, 0], [3, 4, 1, 9]]).encode(), swarm(2, 2, pixels=False), "line 3 has 4 cells, the lines before it 3"),
    ("fractional-label", _rows([["a", "b", "label"], [1, 2, 0], [3, 4, 2.5]]).encode(), swarm(2, 3, pixels=False),
     "line 3, column 'label' (column 3): label 2.5 is not a class: labels must be whole class indices"),
    ("not-a-class-name", _rows([["a", "label"], [1, "cat"], [3, "fish"]]).encode(), swarm(1, 2, ["cat", "dog"], pixels=False),
     "line 3, column 'label' (column 2): label 'fish' is not a class of this swarm (its classes: cat, dog)"),
    ("outside-the-classes", _rows([["a", "label"], [1, 0], [3, 2], [4, 7]]).encode(), swarm(1, 3, pixels=False),
     "labels in [0, 7] are not classes of this model (0..2); first: line 4, column 'label' (column 2): 7"),
    ("text-labels-no-names", _rows([["a", "label"], [1, "cat"], [3, "dog"]]).encode(), swarm(1, 2, pixels=False),
     "text labels such as 'cat', but this swarm's classes have no names: label rows by class index 0..1"),
    ("regression-text-target", _rows([["a", "price"], [1, "cheap"], [3, "dear"]]).encode(), swarm(1, None, pixels=False),
     "'cheap' is not a number; this swarm trains on numeric targets (regression)"),
    ("no-label-column", _rows([[0.5, 0.25, 0.125], [0.5, 0.75, 0.0]]).encode(), swarm(2, 3, pixels=False), "which column holds the label?"),
]
WIDTH = ("wrong-width", _rows([["label", "p0", "p1"], [1, 0, 255], [0, 3, 4]]).encode(), swarm(4, 2, pixels=True))


def python_reads(path: Path, s: dict[str, Any]) -> dict[str, Any]:
    """What `swarm join --data` makes of the file (peer/localdata.py load_local_split's steps)."""
    classes, names = s["numClasses"], s["classNames"]
    try:
        data = read_data_file(path, None, _label_chooser(classes, names))
        pixels = s["pixels"] if s["pixels"] is not None else pixel_values(data.x)
        x = _features(path, data.x, s["inputShape"], pixels)
        y = regression_targets(data) if classes is None else swarm_classes(data, classes, names)
    except ValueError as exc:
        return {"error": str(exc)}
    return {"x_bits": x.view(np.uint32).ravel().tolist(), "y": np.asarray(y, np.float64).ravel().tolist(), "notices": data.notices}


def js_reads(tmp_path: Path, files: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: ./scripts/setup.sh installs nodejs")
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps([{"path": str(p), "swarm": s} for p, s in files]))
    out = subprocess.run([node, str(READER), str(spec)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("csv")
    files = []
    for name, content, s, *_ in [*CASES, (*WIDTH, None)]:
        (tmp / f"{name}.csv").write_bytes(content)
        files.append((tmp / f"{name}.csv", s))
    js = js_reads(tmp, files)
    return {p.stem: (python_reads(p, s), j) for (p, s), j in zip(files, js, strict=True)}


@pytest.mark.parametrize(("name", "refusal"), [(c[0], c[3]) for c in CASES])
def test_the_picker_reads_a_file_as_join_data_does(both: dict[str, tuple[dict[str, Any], dict[str, Any]]], name: str, refusal: str | None) -> None:
    py, js = both[name]
    if refusal is None:
        assert "error" not in py and "error" not in js, (py, js)
        assert js["x_bits"] == py["x_bits"] and js["y"] == py["y"], (py, js)  # the same float32 features, bit for bit
        plain = [re.sub(r" \([^)]*\)", "", n) for n in js["notices"]]
        for notice in py["notices"]:  # Python's notices, without the path it puts first, are the tab's too
            phrase = re.sub(r" \([^)]*\)", "", notice.split(": ", 1)[1])[:60]
            assert any(phrase in n for n in plain), (notice, js["notices"])
    else:
        assert refusal in py.get("error", ""), py
        assert refusal in js.get("error", ""), js


def test_the_picker_scales_0_255_pixels_as_uint8_shards_and_names_the_labels(both: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> None:
    from protocols.dataset import features_float32

    _, js = both["kaggle"]
    shard_x = features_float32(PIX.astype(np.uint8))  # what a published uint8 shard decodes to
    assert js["x_bits"] == shard_x.view(np.uint32).ravel().tolist() and js["y"] == LABELS and js["pixels"] is True
    assert both["headerless-label-first"][1]["y"] == LABELS  # the label-first column found without a header
    assert both["label-last-unscaled-float-swarm"][1]["pixels"] is False  # a float32 swarm's features are left as they are
    assert both["bom-semicolon-decimal-comma-names"][1]["y"] == [0, 1, 0]
    assert both["regression"][1]["targets"] == 1


def test_a_file_of_the_wrong_width_says_what_the_model_takes(both: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> None:
    py, js = both["wrong-width"]
    assert "do not fit the model's input [4]" in py["error"]
    assert js["error"] == ("rows have 2 features besides the label (column 'label' (column 1)), but this model takes 4 "
                           "(input shape [4]); every row needs 4 features and a label")  # fmt: skip
