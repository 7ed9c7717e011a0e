"""What every example shares: its command line, where the data lives, small printing helpers.

Each example runs as ``python examples/NAME.py`` with

- ``--quick`` (or the environment variable ``FASTNN_EXAMPLES_QUICK=1``): tiny sizes, a few
  seconds, used by ``tests/test_examples.py``;
- ``--full``: the long version (the published protocol where there is one);
- ``--data-dir DIR``: where the data files are (default ``$FASTNN_DATA``, else
  ``../shared/data`` beside the repository);
- ``--threads N``: cap the BLAS threads (through threadpoolctl), which are also the
  threads fastnn's compiled backends share large batches between. On a busy machine
  several threads can be many times slower than one.
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

try:  # an installed fastnn wins; from a bare checkout, use the package beside this folder
    import fastnn  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT))


def default_data_dir():
    """``$FASTNN_DATA`` when set, else ``../shared/data`` relative to the repository."""
    return Path(os.environ.get("FASTNN_DATA", REPO_ROOT.parent / "shared" / "data"))


def parse_args(description, add_arguments=None):
    """The command line every example shares; ``add_arguments(parser)`` adds its own.

    The returned namespace has ``mode`` set to ``"quick"``, ``"default"`` or ``"full"``.
    """
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="tiny sizes, a few seconds (also FASTNN_EXAMPLES_QUICK=1)")
    size.add_argument("--full", action="store_true", help="the long version")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="folder with the data files (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="cap the BLAS threads with threadpoolctl (default: no cap)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    if args.threads is not None:
        limit_blas_threads(args.threads)
    quick_env = os.environ.get("FASTNN_EXAMPLES_QUICK", "").strip() not in ("", "0")
    if args.full:
        args.mode = "full"
    elif args.quick or quick_env:
        args.mode = "quick"
    else:
        args.mode = "default"
    return args


_thread_limits = []  # keeps the threadpoolctl limit alive for the whole run


def limit_blas_threads(n_threads):
    """Cap the BLAS thread pools at ``n_threads`` for the rest of the process."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        sys.exit("--threads needs threadpoolctl (pip install threadpoolctl)")
    import scipy.linalg  # noqa: F401  threadpoolctl caps only the BLAS already loaded:
    # numpy's, and scipy's, which the compiled kernels call
    _thread_limits.append(threadpool_limits(limits=n_threads, user_api="blas"))


def require_file(path):
    """Exit with one clear line (status 2) when a data file is missing."""
    path = Path(path)
    if not path.is_file():
        sys.exit(f"data file not found: {path} (pass --data-dir or set FASTNN_DATA)")
    return path


def train_test_split(n_samples, test_fraction, seed, y=None):
    """Index arrays ``(train, test)`` of a random split, stratified by ``y`` when given.

    A few lines of NumPy, so that the examples that do not compare with scikit-learn do not
    need it installed.
    """
    import numpy as np

    rng = np.random.RandomState(seed)
    groups = [np.arange(n_samples)] if y is None else [np.flatnonzero(y == c) for c in np.unique(y)]
    train, test = [], []
    for members in groups:
        members = rng.permutation(members)
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def standardize(X_train, *others):
    """Scale every column to zero mean and unit variance with the training set's statistics."""
    mean = X_train.mean(axis=0)
    scale = X_train.std(axis=0)
    scale[scale == 0] = 1.0
    return [(X - mean) / scale for X in (X_train, *others)]


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.seconds = time.perf_counter() - self._start


def print_table(headers, rows, formats=None):
    """Print rows as aligned columns; ``formats`` holds one format spec per column."""
    formats = formats or [""] * len(headers)
    cells = [[format(value, spec) for value, spec in zip(row, formats)] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(headers)]
    print("  ".join(str(h).rjust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
