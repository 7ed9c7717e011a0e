"""The named data-set loaders: real files from the shared data directory, fabricated bad ones."""

import gzip
import struct

import numpy as np
import pytest

from fastnn import datasets


def _write_idx(path, magic, dims, payload):
    with gzip.open(path, "wb") as handle:
        handle.write(struct.pack(f">{1 + len(dims)}i", magic, *dims))
        handle.write(bytes(payload))


def _write_mnist(directory, images=None, labels=None):
    """Two tiny valid IDX files (3 images of 2 x 2), optionally replaced by given bytes."""
    _write_idx(directory / datasets.MNIST_IMAGES_FILE, 2051, (3, 2, 2), range(0, 240, 20))
    _write_idx(directory / datasets.MNIST_LABELS_FILE, 2049, (3,), [7, 0, 9])
    if images is not None:
        (directory / datasets.MNIST_IMAGES_FILE).write_bytes(images)
    if labels is not None:
        (directory / datasets.MNIST_LABELS_FILE).write_bytes(labels)


def test_sonar(data_dir):
    X, y = datasets.load_sonar(data_dir)
    assert X.shape == (208, 60) and X.dtype == np.float64
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert y.dtype == np.int64
    assert np.bincount(y).tolist() == [97, 111]  # 97 rocks (R -> 0), 111 mines (M -> 1)
    assert X[0, 0] == pytest.approx(0.0200)


def test_sonar_found_through_environment(data_dir, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", str(data_dir))
    X, _ = datasets.load("SONAR")
    assert X.shape == (208, 60)


def test_mnist(data_dir):
    X, y = datasets.load_mnist(data_dir, n=500)
    assert X.shape == (500, 784) and X.dtype == np.float64
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.dtype == np.int64 and set(np.unique(y)) <= set(range(10))
    assert y[:3].tolist() == [7, 2, 1]  # the first labels of the MNIST test set


def test_mnist_full_and_n_larger_than_file(data_dir):
    X, y = datasets.load("mnist", data_dir=data_dir)
    assert X.shape == (10000, 784) and y.shape == (10000,)
    assert np.bincount(y).sum() == 10000


def test_digits():
    pytest.importorskip("sklearn", reason="load_digits ships with scikit-learn")
    X, y = datasets.load("digits")
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.max() == 16.0 and sorted(set(y.tolist())) == list(range(10))


def test_fabricated_mnist_is_parsed(tmp_path):
    _write_mnist(tmp_path)
    X, y = datasets.load_mnist(tmp_path)
    assert X.shape == (3, 4)
    np.testing.assert_allclose(X.ravel(), np.arange(0, 240, 20) / 255.0)
    assert y.tolist() == [7, 0, 9]
    X2, y2 = datasets.load_mnist(tmp_path, n=100)  # n beyond the file: all of it
    assert X2.shape == (3, 4) and y2.tolist() == [7, 0, 9]


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="sonar.all-data.*looked in.*FASTNN_DATA"):
        datasets.load_sonar(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        datasets.load_mnist(tmp_path)


@pytest.mark.parametrize(
    "which, content, message",
    [
        ("images", (2049, (3, 2, 2), range(12)), "magic number 2049, expected 2051"),
        ("labels", (2051, (3,), [1, 2, 3]), "magic number 2051, expected 2049"),
        ("images", (2051, (3, 2, 2), range(11)), "truncated"),
        ("labels", (2049, (4,), [1, 2, 3, 4]), "disagree"),
        ("labels", (2049, (3,), [1, 2, 30]), "above 9"),
    ],
)
def test_corrupt_idx_files(tmp_path, which, content, message):
    _write_mnist(tmp_path)
    name = datasets.MNIST_IMAGES_FILE if which == "images" else datasets.MNIST_LABELS_FILE
    _write_idx(tmp_path / name, *content)
    with pytest.raises(ValueError, match=message):
        datasets.load_mnist(tmp_path)


def test_header_too_short_and_not_gzip(tmp_path):
    _write_mnist(tmp_path, labels=gzip.compress(b"\x00\x00\x08"))
    with pytest.raises(ValueError, match="truncated.*no complete IDX header"):
        datasets.load_mnist(tmp_path)
    _write_mnist(tmp_path, images=b"this is not gzip")
    with pytest.raises(ValueError, match="not a readable gzip file"):
        datasets.load_mnist(tmp_path)


def test_corrupt_sonar(tmp_path):
    path = tmp_path / datasets.SONAR_FILE
    path.write_text("0.1,0.2,M\n0.3,0.4,X\n")
    with pytest.raises(ValueError, match="line 2 has label 'X'"):
        datasets.load_sonar(tmp_path)
    path.write_text("0.1,abc,M\n")
    with pytest.raises(ValueError, match="line 1 is not numeric"):
        datasets.load_sonar(tmp_path)
    path.write_text("0.1,0.2,M\n0.3,R\n")
    with pytest.raises(ValueError, match="same number of features"):
        datasets.load_sonar(tmp_path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="no samples"):
        datasets.load_sonar(tmp_path)


@pytest.mark.parametrize("name", ["iris", None, 3])
def test_unknown_name(name):
    with pytest.raises(ValueError, match="Unknown data set.*sonar, mnist, digits"):
        datasets.load(name)


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "10"])
def test_bad_n(tmp_path, n):
    with pytest.raises(ValueError, match="n must be a positive integer"):
        datasets.load_mnist(tmp_path, n=n)
