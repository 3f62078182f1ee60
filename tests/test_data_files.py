"""Data files as people write them (issue 13, data side): CSV from spreadsheets, Keras-style
.npz, labels as names or 1..K, for ``swarm publish --dataset`` and ``swarm join --data`` alike.

Every file is written here, byte for byte as a spreadsheet or NumPy would write it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.datasets import load_dataset
from apps.publish import DataOptions, PublishInputError, build_publication, upload
from peer.datafile import DataFileError
from peer.node import load_local_data
from peer.localdata import load_local_split
from protocols.dataset import decode_shard, encode_shard
from protocols.manifest import Manifest

from tiny_swarm import tiny_publication

ROOT = Path(__file__).resolve().parent.parent
TINY = tiny_publication(Ed25519PrivateKey.generate()).manifest  # input [4], 3 classes, uint8 shards


def named(manifest: Manifest, names: list[str] | None) -> Manifest:
    """``manifest`` with its classes named (what publishing a string-label file produces)."""
    data = manifest.model_dump()
    data["dataset"]["class_names"] = names
    return Manifest.model_validate(data)


# ---- CSV dialects -----------------------------------------------------------------------


def test_excel_csv_with_bom_semicolons_crlf_decimal_commas_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffsepal length;sepal width;species\r\n5,1;3,5;\"setosa\"\r\n7,0;3,2;versicolor\r\n"
                     "6,3;3,3;\"virginica\"\r\n4,9;3,0;setosa\r\n".encode())  # fmt: skip
    data = load_dataset(path)  # the label column is found by its name, 'species', through the BOM
    np.testing.assert_array_equal(data.x, np.float32([[5.1, 3.5], [7.0, 3.2], [6.3, 3.3], [4.9, 3.0]]))
    assert data.y.tolist() == [0, 1, 2, 0] and data.class_names == ["setosa", "versicolor", "virginica"]


def test_comma_csv_with_quoted_commas_and_a_tab_separated_file(tmp_path: Path) -> None:
    (tmp_path / "q.csv").write_text('a,b,label\n1.5,2,"cat, large"\n3,4,dog\n')
    data = load_dataset(tmp_path / "q.csv")
    assert data.class_names == ["cat, large", "dog"] and data.y.tolist() == [0, 1]
    (tmp_path / "t.csv").write_text("a\tb\ttarget\n1.5\t2\t0\n3\t4\t1\n")
    data = load_dataset(tmp_path / "t.csv")
    assert data.x.tolist() == [[1.5, 2.0], [3.0, 4.0]] and data.y.tolist() == [0, 1]


def test_a_headerless_label_first_file_takes_the_column_index(tmp_path: Path) -> None:
    (tmp_path / "k.csv").write_text("3,0,255,17\n1,4,0,0\n3,9,9,9\n")
    with pytest.raises(DataFileError, match=r"which column holds the label\? it has no header row.*--label-column"):
        load_dataset(tmp_path / "k.csv")
    data = load_dataset(tmp_path / "k.csv", "0")
    assert data.x.dtype == np.uint8 and data.x.tolist() == [[0, 255, 17], [4, 0, 0], [9, 9, 9]]
    assert data.y.tolist() == [1, 0, 1] and data.class_names == ["1", "3"]  # 1, 3 do not start at 0: named
    assert any("pixel values" in n for n in data.notices)


# ---- labels -----------------------------------------------------------------------------


def test_labels_one_to_k_are_remapped_with_a_notice_and_their_names_kept(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("f1,f2,label\n0.1,0.2,1\n0.3,0.4,2\n0.5,0.6,3\n0.7,0.8,1\n")
    data = load_dataset(tmp_path / "d.csv")
    assert data.y.tolist() == [0, 1, 2, 0] and data.class_names == ["1", "2", "3"]
    assert any("labels 1..3 do not start at 0: published as classes 0..2" in n for n in data.notices)


def test_every_refusal_names_the_cell_column_and_row(tmp_path: Path) -> None:
    cases = {
        "missing.csv": ("a,b,label\n1,2,0\n3,,1\n", r"line 3, column 'b' \(column 2\) is empty or NA .*fill them in or drop"),
        "text.csv": ("a,b,label\n1,2,0\n3,tall,1\n", r"line 3, column 'b' \(column 2\): 'tall' is not a number"),
        "label.csv": ("a,b,label\n1,2,0\n3,4,\n", r"line 3, column 'label' \(column 3\) is empty or NA"),
        "float.csv": ("a,b,label\n1,2,0\n3,4,2.5\n", r"line 3, column 'label' \(column 3\): label 2.5 is not a class.*--loss mean_squared_error"),
        "ragged.csv": ("a,b,label\n1,2,0\n3,4,1,9\n", r"line 3 has 4 cells, the lines before it 3"),
        "blank.csv": ("a,b,label\n1,2,0\n\n3,4,x\n5,oops,1\n", r"line 5, column 'b' \(column 2\): 'oops'"),
    }  # fmt: skip
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataFileError, match=message):
            load_dataset(tmp_path / name)


def test_a_saved_dataframe_index_gets_a_warning(tmp_path: Path) -> None:
    (tmp_path / "df.csv").write_text(",height,weight,label\n0,1.5,60,0\n1,1.8,80,1\n2,1.7,70,1\n")
    data = load_dataset(tmp_path / "df.csv")
    assert any("looks like a saved DataFrame index" in n and "index=False" in n for n in data.notices)
    assert data.x.shape == (3, 3)  # kept as a feature: the warning says so


# ---- arrays as Keras and NumPy write them -----------------------------------------------


def test_y_of_shape_n_by_1_and_one_hot_rows_are_accepted(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((6, 4))
    np.savez(tmp_path / "col.npz", x=x, y=np.array([[0], [1], [2], [0], [1], [2]]))
    assert load_dataset(tmp_path / "col.npz").y.tolist() == [0, 1, 2, 0, 1, 2]
    np.savez(tmp_path / "hot.npz", x=x, y=np.eye(3)[[0, 1, 2, 0, 1, 2]])
    assert load_dataset(tmp_path / "hot.npz").y.tolist() == [0, 1, 2, 0, 1, 2]


def test_keras_style_npz_publishes_its_own_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "keras.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 2, 2), dtype=np.uint8), y_train=rng.integers(0, 3, (40, 1)),
             x_test=rng.integers(0, 256, (9, 2, 2), dtype=np.uint8), y_test=np.arange(9).reshape(9, 1) % 3)  # fmt: skip
    pub = build_publication(Ed25519PrivateKey.generate(), hidden=[(8, "relu")], data=DataOptions(str(path), shards=2))
    ds = pub.manifest.dataset
    assert ds is not None and ds.test.num_samples == 9 and sum(s.num_samples for s in ds.train_shards) == 40
    x_test, y_test = decode_shard(pub.blobs[ds.test.digest])
    assert y_test.tolist() == [0, 1, 2] * 3 and x_test.shape == (9, 4)  # the no-code MLP takes them flat
    assert any("x_test/y_test" in n for n in pub.notices)


def test_string_labels_publish_with_their_names_in_the_manifest(tmp_path: Path) -> None:
    rows = "".join(f"{i % 7},{(i * 3) % 5},{['cat', 'dog', 'bird'][i % 3]}\n" for i in range(30))
    (tmp_path / "pets.csv").write_text("whiskers,ears,animal\n" + rows)
    pub = build_publication(Ed25519PrivateKey.generate(), hidden=[(8, "relu")],
                            data=DataOptions(str(tmp_path / "pets.csv"), label_column="animal", shards=2))  # fmt: skip
    ds = pub.manifest.dataset
    assert ds is not None and ds.num_classes == 3 and ds.class_names == ["bird", "cat", "dog"]
    labels = np.concatenate([decode_shard(pub.blobs[r.digest])[1] for r in [*ds.train_shards, ds.test]])
    assert sorted(np.bincount(labels).tolist()) == [10, 10, 10]
    with pytest.raises(PublishInputError, match=r"no label column 'kind'"):
        build_publication(Ed25519PrivateKey.generate(), hidden=[(8, "relu")],
                          data=DataOptions(str(tmp_path / "pets.csv"), label_column="kind"))  # fmt: skip


# ---- a contributor's own file (swarm join --data) ------------------------------------------


def test_join_data_csv_is_scaled_as_the_swarms_uint8_shards(tmp_path: Path) -> None:
    pixels = np.array([[0, 17, 255, 128], [3, 3, 3, 3], [200, 0, 1, 9]], dtype=np.uint8)
    labels = np.array([2, 0, 1], dtype=np.uint8)
    (tmp_path / "mine.csv").write_text("label,p0,p1,p2,p3\n" + "".join(
        f"{lab},{','.join(map(str, row))}\n" for lab, row in zip(labels, pixels, strict=True)))  # fmt: skip
    x, y = load_local_data(tmp_path / "mine.csv", TINY, pixels=True)
    shard_x, shard_y = decode_shard(encode_shard(pixels, labels))
    assert x.tobytes() == shard_x.tobytes() and y.tolist() == shard_y.tolist()  # bit for bit
    x, _ = load_local_data(tmp_path / "mine.csv", TINY, pixels=False)  # a swarm of float features: unchanged
    assert x.tolist() == pixels.astype(np.float32).tolist()


def test_join_data_headerless_label_first_is_found_by_its_labels(tmp_path: Path) -> None:
    (tmp_path / "k.csv").write_text("2,0,17,255,0\n0,3,3,3,0\n1,200,0,1,0\n")  # last column constant 0: no label
    x, y = load_local_data(tmp_path / "k.csv", TINY, pixels=True)
    assert y.tolist() == [2, 0, 1] and x.shape == (3, 4) and float(x.max()) == 1.0


def test_join_data_string_labels_map_by_the_swarms_class_names(tmp_path: Path) -> None:
    manifest = named(TINY, ["bird", "cat", "dog"])
    (tmp_path / "pets.csv").write_text("a,b,c,d,label\n1,2,3,4,dog\n1,2,3,4,bird\n")
    _, y = load_local_data(tmp_path / "pets.csv", manifest)
    assert y.tolist() == [2, 0]
    (tmp_path / "fish.csv").write_text("a,b,c,d,label\n1,2,3,4,dog\n1,2,3,4,fish\n")
    with pytest.raises(DataFileError, match=r"line 3, column 'label' \(column 5\): label 'fish' is not a class of this swarm \(its classes: bird, cat, dog\)"):
        load_local_data(tmp_path / "fish.csv", manifest)
    with pytest.raises(DataFileError, match=r"this swarm's classes have no names: label rows by class index 0\.\.2"):
        load_local_data(tmp_path / "pets.csv", TINY)
    # a swarm published from labels 1..3 keeps the names 1, 2, 3: a contributor's 1..3 file fits it
    np.savez(tmp_path / "one.npz", x=np.zeros((3, 4)), y=np.array([3, 1, 2]))
    assert load_local_data(tmp_path / "one.npz", named(TINY, ["1", "2", "3"]))[1].tolist() == [2, 0, 1]


def test_join_data_keras_npz_brings_its_own_test_split(tmp_path: Path) -> None:
    np.savez(tmp_path / "k.npz", x_train=np.zeros((5, 4)), y_train=np.array([[0], [1], [2], [0], [1]]),
             x_test=np.ones((2, 4)), y_test=np.array([2, 2]))  # fmt: skip
    (x, y), test = load_local_split(tmp_path / "k.npz", TINY)
    assert y.tolist() == [0, 1, 2, 0, 1] and test is not None and test[1].tolist() == [2, 2]


async def test_swarm_join_with_labels_one_to_k_exits_with_the_fix(server: str, tmp_path: Path) -> None:
    reply = await upload(server, tiny_publication(Ed25519PrivateKey.generate()))
    (tmp_path / "mine.csv").write_text("a,b,c,d,label\n" + "".join(f"0.1,0.2,0.3,0.4,{1 + i % 3}\n" for i in range(9)))
    argv = [sys.executable, "-m", "apps.cli", "join", reply["join_url"], "--data", str(tmp_path / "mine.csv"), "--quiet",
            "--identity", str(tmp_path / "k.key"), "--checkpoint-dir", str(tmp_path / "ckpt"), "--ice-address", "127.0.0.1"]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=90,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "labels run 1..3, but this model's 3 classes are 0..2: subtract 1" in done.stderr
    assert "Traceback" not in done.stderr
