"""Loaders for the named data sets used by the tests, benchmarks, examples and the CLI.

Each loader returns ``(X, y)`` as NumPy arrays. The files are read from a data directory,
searched in this order: the ``data_dir`` argument, the ``FASTNN_DATA`` environment
variable, then ``../shared/data`` relative to the current directory (running from a
checkout) and beside the source tree (an in-place build). Nothing is downloaded.
"""

import gzip
import os
import struct
from pathlib import Path

import numpy as np

SONAR_FILE = "sonar.all-data"
MNIST_IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
MNIST_LABELS_FILE = "t10k-labels-idx1-ubyte.gz"

# IDX magic numbers: 0x0000 08 03 (unsigned bytes, 3 dimensions) and 0x0000 08 01.
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

_REPOSITORY_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def _candidate_dirs(data_dir):
    if data_dir is not None:
        return [Path(data_dir)]
    candidates = []
    if os.environ.get("FASTNN_DATA"):
        candidates.append(Path(os.environ["FASTNN_DATA"]))
    candidates.append(Path.cwd().parent / "shared" / "data")
    if _REPOSITORY_DATA_DIR not in candidates:
        candidates.append(_REPOSITORY_DATA_DIR)
    return candidates


def _find(filename, data_dir):
    """Path of ``filename`` in the first data directory holding it, or a clear error."""
    candidates = _candidate_dirs(data_dir)
    for directory in candidates:
        path = directory / filename
        if path.is_file():
            return path
    looked = ", ".join(str(directory / filename) for directory in candidates)
    raise FileNotFoundError(
        f"Data file {filename!r} not found; looked in: {looked}. Pass data_dir= or set "
        "the FASTNN_DATA environment variable to the directory that holds it."
    )


def load_sonar(data_dir=None):
    """The UCI sonar data set (mines vs. rocks), 208 samples x 60 features.

    Parameters
    ----------
    data_dir : str or path-like, default=None
        Directory holding ``sonar.all-data``; None searches the default directories
        (module docstring).

    Returns
    -------
    X : ndarray of shape (208, 60), float64
        The sonar energies, in [0, 1].
    y : ndarray of shape (208,), int64
        1 for ``M`` (mine), 0 for ``R`` (rock).
    """
    path = _find(SONAR_FILE, data_dir)
    rows, labels = [], []
    with open(path, encoding="ascii") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            *values, label = line.split(",")
            if label not in ("M", "R"):
                raise ValueError(
                    f"{path}: line {line_number} has label {label!r}, expected 'M' or 'R'."
                )
            try:
                rows.append([float(value) for value in values])
            except ValueError as exc:
                raise ValueError(f"{path}: line {line_number} is not numeric ({exc}).") from None
            labels.append(1 if label == "M" else 0)
    if not rows:
        raise ValueError(f"{path} holds no samples.")
    if len({len(row) for row in rows}) != 1:
        raise ValueError(f"{path}: the rows do not all have the same number of features.")
    return np.array(rows, dtype=np.float64), np.array(labels, dtype=np.int64)


def _read_idx(path, magic, n_dims):
    """Dimensions and payload of a gzipped IDX file of unsigned bytes, with checks."""
    header_size = 4 * (1 + n_dims)  # big-endian int32 magic, then one int32 per dimension
    try:
        with gzip.open(path, "rb") as handle:
            content = handle.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable gzip file ({exc}).") from None
    if len(content) < header_size:
        raise ValueError(f"{path} is truncated: {len(content)} bytes, no complete IDX header.")
    found_magic, *dims = struct.unpack(f">{1 + n_dims}i", content[:header_size])
    if found_magic != magic:
        raise ValueError(f"{path} has IDX magic number {found_magic}, expected {magic}.")
    expected = int(np.prod(dims))
    payload = np.frombuffer(content, dtype=np.uint8, offset=header_size)
    if payload.size != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header announces {expected} bytes of data, "
            f"found {payload.size}."
        )
    return dims, payload


def load_mnist(data_dir=None, n=None):
    """The MNIST test set (10,000 handwritten digits, 28 x 28 pixels), from IDX files.

    Parameters
    ----------
    data_dir : str or path-like, default=None
        Directory holding ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``;
        None searches the default directories (module docstring).
    n : int, default=None
        Return only the first ``n`` samples (all when None).

    Returns
    -------
    X : ndarray of shape (n, 784), float64
        Pixel intensities scaled to [0, 1].
    y : ndarray of shape (n,), int64
        The digit, 0 to 9.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"n must be a positive integer or None, got {n!r}.")
    images_path = _find(MNIST_IMAGES_FILE, data_dir)
    labels_path = _find(MNIST_LABELS_FILE, data_dir)
    (n_images, n_rows, n_cols), pixels = _read_idx(images_path, IDX_IMAGES_MAGIC, 3)
    (n_labels,), labels = _read_idx(labels_path, IDX_LABELS_MAGIC, 1)
    if n_images != n_labels:
        raise ValueError(
            f"MNIST files disagree: {n_images} images in {images_path} but {n_labels} "
            f"labels in {labels_path}."
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path} holds labels above 9; the file is corrupt.")
    count = n_images if n is None else min(int(n), n_images)
    X = pixels[: count * n_rows * n_cols].reshape(count, n_rows * n_cols) / 255.0
    return X, labels[:count].astype(np.int64)


def load_digits():
    """scikit-learn's bundled digits (1797 samples of 8 x 8 pixels, values 0 to 16).

    Returns
    -------
    X : ndarray of shape (1797, 64), float64
    y : ndarray of shape (1797,), int64

    Raises
    ------
    ModuleNotFoundError
        When scikit-learn, which ships this data set, is not installed.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError:
        raise ModuleNotFoundError(
            "The digits data set ships with scikit-learn, which is not installed; "
            "install it (pip install scikit-learn) or use load('sonar') / load('mnist')."
        ) from None
    X, y = sklearn_load_digits(return_X_y=True)
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


LOADERS = {"sonar": load_sonar, "mnist": load_mnist, "digits": load_digits}


def load(name, data_dir=None):
    """Load a named data set: ``'sonar'``, ``'mnist'`` or ``'digits'``.

    Parameters
    ----------
    name : str
        The data set's name (case-insensitive).
    data_dir : str or path-like, default=None
        Directory holding the files (ignored for ``'digits'``).

    Returns
    -------
    X, y : ndarray
        As returned by the data set's loader.
    """
    if not isinstance(name, str) or name.lower() not in LOADERS:
        raise ValueError(f"Unknown data set {name!r}; choose one of {', '.join(LOADERS)}.")
    loader = LOADERS[name.lower()]
    if loader is load_digits:
        return loader()
    return loader(data_dir=data_dir)
