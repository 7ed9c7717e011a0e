"""The ``fastnn`` command line: ``fastnn info``, ``fastnn bench`` and ``fastnn train``.

Installed as the console script ``fastnn`` and runnable as ``python -m fastnn``. Every
command has ``--help``. Errors (bad paths, bad options, bad files) are one line on stderr
and a non-zero exit status, never a traceback.
"""

import argparse
import csv
import os
import re
import sys
import time

import numpy as np

EXIT_ERROR = 1
EXIT_USAGE = 2
NAMED_DATASETS = ("digits", "sonar", "mnist")
TASKS = ("classify", "regress", "autoencode", "perceptron")


class CommandError(Exception):
    """A problem the user can fix; printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points to ``--help``."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _comma_list(convert, name):
    def parse(text):
        try:
            values = [convert(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {name}")
        if not values:
            raise argparse.ArgumentTypeError(f"empty list of {name}")
        return values
    return parse


def _checked_number(parse, kind, is_valid, requirement):
    """An argparse type: ``parse`` the text as ``kind``, then require ``is_valid``."""

    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not is_valid(value):
            raise argparse.ArgumentTypeError(f"{text!r} {requirement}")
        return value

    return convert


_positive_int = _checked_number(int, "an integer", lambda v: v >= 1, "must be at least 1")
_positive_float = _checked_number(float, "a number", lambda v: 0 < v < float("inf"),
                                  "must be a positive number")
_fraction = _checked_number(float, "a number", lambda v: 0.0 < v < 1.0,
                            "must lie strictly between 0 and 1")


def _hidden_sizes(text):
    if text.strip() in ("", "none", "()"):
        return ()
    return tuple(_comma_list(_positive_int, "positive layer sizes")(text))


# --------------------------------------------------------------------------- fastnn info

def _info(args):
    import fastnn
    from fastnn import _backend
    from fastnn._bench import machine

    print(f"fastnn {fastnn.__version__}")
    versions = machine.package_versions()
    print("python " + sys.version.split()[0] + ", " + ", ".join(
        f"{name} {version}" for name, version in versions.items()
        if name != "fastnn" and version is not None))
    available = fastnn.available_backends()
    print(f"backends available: {', '.join(available)}")
    for name in _backend.BACKENDS:
        if name not in available:
            print(f"  {name} unavailable: {_backend._import_errors.get(name)}")
    requested = os.environ.get("FASTNN_BACKEND")
    print(f"active backend: {fastnn.get_backend()}"
          + (f" (FASTNN_BACKEND={requested})" if requested else ""))
    for pool in machine.blas_info():
        where = os.path.basename(pool.get("filepath") or "") or pool.get("source", "")
        print(f"{pool['user_api']}: {pool.get('internal_api')} {pool.get('version') or ''}"
              f" ({where}{', ' + pool['architecture'] if pool.get('architecture') else ''}),"
              f" threads {pool.get('num_threads')}")
    print(f"cpu: {machine.cpu_name()}, cores: {machine.n_cores()}")
    from fastnn import _blas_threads

    if _blas_threads.controls() is None:
        print("epoch threads: 1 (no thread controls found for scipy's BLAS)")
    else:
        print(f"epoch threads: up to {_blas_threads.blas_threads()} (scipy's BLAS threads; "
              "large minibatches are shared between fastnn's own threads, docs/kernels.md)")
    return 0


# -------------------------------------------------------------------------- fastnn bench

def _bench(args):
    from fastnn._bench import report, runners, suite, targets, workloads

    try:
        ids = workloads.parse_ids(args.only) if args.only else list(workloads.WORKLOADS)
        impls = runners.parse_impls(args.impls) if args.impls else suite.default_impls(args.peers)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for path in (args.json, args.plot):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise CommandError(f"cannot write {path}: its directory does not exist")
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (fail before an hour of benchmarks, not after)
        except ImportError:
            raise CommandError("--plot needs matplotlib (pip install matplotlib)") from None
    options = suite.Options(
        workloads=tuple(ids), impls=tuple(impls), dtypes=tuple(args.dtype),
        threads=tuple(args.threads), quick=args.quick, epochs=args.epochs,
        data_dir=args.data_dir)

    def progress(line):
        print(line, file=sys.stderr, flush=True)

    document = suite.run_suite(options, progress)
    document["command"] = "fastnn " + " ".join(args.argv)
    print(report.format_table(document))
    print("\nTargets (issues 3, 4 and 6, SPEC section 5):")
    print(targets.format_targets(document["targets"]))
    if args.json:
        report.write_json(document, args.json)
        progress(f"results written to {args.json}")
    if args.plot:
        report.plot(document, args.plot)
        progress(f"bar chart written to {args.plot}")
    failed = [r for r in document["results"] if r["status"] == "failed"]
    bad = suite.failed_checks(document)
    for record in failed:
        progress(f"error: {record['impl']} failed on {record['workload']} "
                 f"{record['dtype']}: {record['reason']}")
    for record in bad:
        progress(f"error: {record['impl']} on {record['workload']} {record['dtype']} did not "
                 f"do the same work as {record['check']['against']} "
                 f"(relative difference {record['check']['rel_err']:.2e})")
    return EXIT_ERROR if failed or bad else 0


# -------------------------------------------------------------------------- fastnn train

def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column_index(target, header, n_columns):
    """The index of ``--target`` (a name from the header, or an integer, negative ok)."""
    if target is None:
        return n_columns - 1
    if header is not None and target in header:
        return header.index(target)
    try:
        index = int(target)
    except ValueError:
        raise CommandError(f"--target {target!r} is neither a column name of the header nor "
                           "a column number") from None
    if not -n_columns <= index < n_columns:
        raise CommandError(f"--target {index} is out of range: the data has {n_columns} columns")
    return index % n_columns


def _read_csv(path):
    """``(header or None, rows of strings)``; the header is a first row with any
    non-numeric cell."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not a text CSV file") from None
    except csv.Error as exc:
        raise CommandError(f"{path} is not a valid CSV file ({exc})") from None
    if not rows:
        raise CommandError(f"{path} holds no data")
    header = None
    if not all(_is_number(cell) for cell in rows[0]):
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
    if not rows:
        raise CommandError(f"{path} holds a header but no data rows")
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise CommandError(f"{path}: the rows do not all have the same number of columns")
    return header, rows


def _load_csv(path, target, task):
    header, rows = _read_csv(path)
    n_columns = len(rows[0])
    with_target = task != "autoencode" or target is not None
    index = _column_index(target, header, n_columns) if with_target else None
    if with_target and n_columns < 2:
        raise CommandError(f"{path} has a single column: no features beside the target")
    cells = np.array(rows, dtype=str)
    features = [j for j in range(n_columns) if j != index]
    try:
        X = cells[:, features].astype(np.float64)
    except ValueError:  # name the first offending cell
        i, j = next((i, j) for i, row in enumerate(rows) for j in features
                    if not _is_number(row[j]))
        name = header[j] if header else f"column {j}"
        raise CommandError(f"{path}: {name} of data row {i + 1} is not numeric "
                           f"({rows[i][j]!r})") from None
    if not with_target:
        return X, None
    labels = np.char.strip(cells[:, index])
    if task == "regress" or all(_is_number(label) for label in labels):
        try:
            return X, labels.astype(np.float64)
        except ValueError:
            raise CommandError(f"{path}: the target column is not numeric, so it cannot be "
                               "regressed") from None
    return X, labels


def _load_npy(path, target, task):
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path} is not a readable .npy file ({exc})") from None
    if table.ndim != 2:
        raise CommandError(f"{path} holds a {table.ndim}-D array; expected 2-D "
                           "(samples x columns, the target last)")
    with_target = task != "autoencode" or target is not None
    if not with_target:
        return table, None
    index = _column_index(target, None, table.shape[1])
    return np.delete(table, index, axis=1), table[:, index]


def _load_npz(path, target, task):
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path} is not a readable .npz file ({exc})") from None
    if "X" not in arrays:
        raise CommandError(f"{path} has no array named X (found: {', '.join(arrays) or 'none'})")
    if task != "autoencode" and "y" not in arrays:
        raise CommandError(f"{path} has no array named y, which --task {task} needs")
    return arrays["X"], arrays.get("y") if task != "autoencode" else None


def load_data(source, task, target=None, data_dir=None):
    """``(X, y)`` from a named data set or a CSV / NPY / NPZ file (``y`` None for
    ``autoencode``)."""
    if source.lower() in NAMED_DATASETS and not os.path.exists(source):
        from fastnn import datasets

        try:
            X, y = datasets.load(source.lower(), data_dir=data_dir)
        except (FileNotFoundError, ModuleNotFoundError) as exc:
            raise CommandError(str(exc)) from None
        return X, (None if task == "autoencode" else y)
    if not os.path.exists(source):
        raise CommandError(f"{source}: no such file (and not a data set name: "
                           f"{', '.join(NAMED_DATASETS)})")
    if os.path.isdir(source):
        raise CommandError(f"{source} is a directory, not a data file")
    loaders = {".csv": _load_csv, ".npy": _load_npy, ".npz": _load_npz}
    extension = os.path.splitext(source)[1].lower()
    if extension not in loaders:
        raise CommandError(f"{source}: unknown file type {extension or '(none)'}; "
                           "use .csv, .npy or .npz")
    return loaders[extension](source, target, task)


def _estimator(args):
    """The estimator that ``--task`` and the model options describe."""
    import fastnn

    common = {"random_state": args.seed, "backend": args.backend}
    if args.epochs is not None:
        common["max_iter"] = args.epochs
    if args.task == "perceptron":
        for option in ("hidden", "activation", "solver", "batch_size"):
            if getattr(args, option) is not None:
                raise CommandError(f"--{option.replace('_', '-')} does not apply to "
                                   "--task perceptron")
        return fastnn.Perceptron(eta0=args.lr if args.lr is not None else 1.0, **common)
    network = dict(common)
    network["hidden_layer_sizes"] = args.hidden if args.hidden is not None else (
        (32,) if args.task == "autoencode" else (100,))
    for option, name in (("activation", "activation"), ("solver", "solver"),
                         ("lr", "learning_rate_init"), ("batch_size", "batch_size")):
        if getattr(args, option) is not None:
            network[name] = getattr(args, option)
    classes = {"classify": "MLPClassifier", "regress": "MLPRegressor",
               "autoencode": "Autoencoder"}
    return getattr(fastnn, classes[args.task])(**network)


class _ProgressBar:
    """Turns the estimators' ``verbose`` lines into one self-rewriting progress line.

    Installed as ``sys.stderr`` during ``fit``: it recognises the per-epoch lines of the
    networks (``Iteration 3, loss = 0.1234``) and of the perceptron (``-- Epoch 3:
    objective [...]``), redraws ``[#####-----] epoch 3/200 loss 0.1234 12,345 samples/s``
    and passes any other line through.
    """

    PATTERNS = (re.compile(r"Iteration (\d+), loss = (\S+)"),
                re.compile(r"-- Epoch (\d+): \w[\w ]*? \[?\s*([^\],\s]+)"))
    WIDTH = 24

    def __init__(self, stream, total_epochs, n_samples):
        self.stream = stream
        self.total = total_epochs
        self.n_samples = n_samples
        self.start = time.perf_counter()
        self.pending = ""
        self.drawn = False
        self.first = None

    def write(self, text):
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            self._line(line)
        return len(text)

    def flush(self):
        self.stream.flush()

    def _line(self, line):
        for pattern in self.PATTERNS:
            match = pattern.search(line)
            if match:
                self._draw(int(match.group(1)), match.group(2))
                return
        if line.strip():
            self._clear()
            self.stream.write(line + "\n")

    def _draw(self, epoch, loss):
        # The rate counts from the first epoch's line: fit's set-up is not training.
        now = time.perf_counter()
        if self.first is None:
            self.first = (epoch, now)
            rate = self.n_samples * epoch / max(now - self.start, 1e-9)
        else:
            rate = self.n_samples * (epoch - self.first[0]) / max(now - self.first[1], 1e-9)
        done = min(epoch / self.total, 1.0) if self.total else 1.0
        bar = "#" * round(done * self.WIDTH) + "-" * (self.WIDTH - round(done * self.WIDTH))
        self.stream.write(f"\r[{bar}] epoch {epoch}/{self.total} loss {loss} "
                          f"{rate:,.0f} samples/s ")
        self.stream.flush()
        self.drawn = True

    def _clear(self):
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False

    def close(self):
        if self.pending.strip():
            self._line(self.pending)
        self._clear()


def _fit(estimator, X, y, show_progress):
    """Fit, drawing the progress bar from the estimator's verbose lines when asked;
    warnings (ConvergenceWarning...) are shown afterwards as one line each."""
    import warnings

    arguments = (X,) if y is None else (X, y)
    bar = None
    if show_progress:
        quiet = estimator.get_params()["verbose"]
        estimator.set_params(verbose=True if isinstance(quiet, bool) else 1)
        bar = _ProgressBar(sys.stderr, estimator.get_params()["max_iter"], X.shape[0])
        real_stderr, sys.stderr = sys.stderr, bar
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            estimator.fit(*arguments)
    finally:
        if bar is not None:
            sys.stderr = real_stderr
            bar.close()
            estimator.set_params(verbose=quiet)
    for message in dict.fromkeys(str(w.message).strip().splitlines()[0] for w in caught
                                 if str(w.message).strip()):
        print(f"fastnn train: warning: {message}", file=sys.stderr)
    return estimator


def _train(args):
    from fastnn import _backend
    from fastnn._base import validation_split

    if args.backend is not None and args.backend not in _backend.available_backends():
        raise CommandError(f"backend {args.backend} is not available here "
                           f"({_backend._import_errors.get(args.backend)})")
    if args.save and not os.path.isdir(os.path.dirname(os.path.abspath(args.save))):
        raise CommandError(f"cannot save to {args.save}: its directory does not exist")
    X, y = load_data(args.data, args.task, args.target, args.data_dir)
    if X.shape[0] < 4:
        raise CommandError(f"{args.data} has only {X.shape[0]} samples; too few to train and test")
    stratify = y if args.task in ("classify", "perceptron") else None
    try:
        train, test = validation_split(X.shape[0], args.test_size,
                                       np.random.RandomState(args.seed), stratify)
    except ValueError as exc:
        raise CommandError(f"cannot split off a test set: {exc}") from None
    estimator = _estimator(args)
    show_progress = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty())
    started = time.perf_counter()
    _fit(estimator, X[train], None if y is None else y[train], show_progress)
    seconds = time.perf_counter() - started
    score = (estimator.score(X[test]) if y is None else estimator.score(X[test], y[test]))
    what = {"classify": "accuracy", "perceptron": "accuracy", "regress": "R^2",
            "autoencode": "negative mean squared reconstruction error"}[args.task]
    epochs = getattr(estimator, "n_iter_", None)
    print(f"{type(estimator).__name__} trained on {len(train)} samples in {seconds:.2f} s"
          + (f" ({int(np.max(epochs))} epochs)" if epochs is not None else ""))
    print(f"held-out {what}: {score:.4f} ({len(test)} test samples)")
    if args.save:
        estimator.save(args.save)
        print(f"model saved to {args.save} (reload with fastnn.load)")
    return 0


# ------------------------------------------------------------------------------- parser

def build_parser():
    parser = _Parser(
        prog="fastnn",
        description="fastnn: compiled perceptrons, multilayer perceptrons and autoencoders.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    info = commands.add_parser(
        "info", help="version, backends, BLAS and threads, CPU",
        description="Print fastnn's version, the backends available and the active one, the "
                    "BLAS libraries in use with their threads, the CPU and its cores, and "
                    "how many threads an epoch may share.")
    info.set_defaults(handler=_info)

    from fastnn._bench import runners, workloads

    bench = commands.add_parser(
        "bench", help="benchmark the workloads W1-W6 (SPEC section 5)",
        description="Time fastnn's backends (and, with --peers, scikit-learn, PyTorch and a "
                    "plain @njit loop) on the workloads W1-W6: "
                    + "; ".join(f"{w.id} {w.name}" for w in workloads.WORKLOADS.values())
                    + ". Prints a table (samples/s, ratio to the best peer, GFLOP/s, % of "
                    "the GEMM peak measured in the same run, same-work check); a progress "
                    "line per workload goes to stderr. Exit status 1 when a run failed or "
                    "did not do the same work as the reference.")
    bench.add_argument("--quick", action="store_true",
                       help="fewer samples and epochs (finishes in about a minute)")
    bench.add_argument("--peers", action="store_true",
                       help="add scikit-learn, PyTorch and the plain @njit loop where installed")
    bench.add_argument("--only", metavar="W2,W5", help="run only these workloads")
    bench.add_argument("--impls", metavar="LIST",
                       help=f"run only these implementations ({', '.join(runners.IMPLS)}); "
                            "overrides --peers")
    bench.add_argument("--dtype", type=_comma_list(_dtype_name, "float32/float64"),
                       default=["float32", "float64"], metavar="float32,float64",
                       help="floating-point types (default: both)")
    bench.add_argument("--threads", type=_comma_list(_positive_int, "thread counts"),
                       default=None, metavar="N[,N...]",
                       help="BLAS / PyTorch threads, which fastnn's compiled backends also "
                            "share large batches between; a list runs each (default: all "
                            "cores)")
    bench.add_argument("--epochs", type=_positive_int,
                       help="override every workload's number of timed epochs")
    bench.add_argument("--data-dir", help="directory of the sonar and MNIST files "
                                          "(default: $FASTNN_DATA, then ../shared/data)")
    bench.add_argument("--json", metavar="FILE", help="write every figure and the machine "
                                                      "info to FILE as JSON")
    bench.add_argument("--plot", metavar="FILE", help="write a bar chart PNG (matplotlib)")
    bench.set_defaults(handler=_bench)

    train = commands.add_parser(
        "train", help="train a model on a CSV / NPY / NPZ file or a named data set",
        description="Train an MLPClassifier (classify), MLPRegressor (regress), Autoencoder "
                    "(autoencode) or Perceptron on DATA, show a progress bar on a terminal, "
                    "print the held-out score and optionally save the model. DATA is a .csv "
                    "(target in the last column unless --target; a non-numeric first row is "
                    "a header), a .npy 2-D array (target last), a .npz with arrays X and y, "
                    f"or one of {', '.join(NAMED_DATASETS)}.")
    train.add_argument("data", metavar="DATA", help="file path or data set name")
    train.add_argument("--task", required=True, choices=TASKS)
    train.add_argument("--hidden", type=_hidden_sizes, metavar="64,32",
                       help="hidden layer sizes (default 100; 32 for autoencode)")
    train.add_argument("--activation", choices=("identity", "logistic", "tanh", "relu"),
                       help="hidden activation (default relu)")
    train.add_argument("--solver", choices=("sgd", "adam", "lbfgs"), help="default adam")
    train.add_argument("--lr", type=_positive_float,
                       help="learning rate (learning_rate_init; eta0 of the perceptron)")
    train.add_argument("--epochs", type=_positive_int, help="max_iter (default: estimator's)")
    train.add_argument("--batch-size", type=_positive_int, help="minibatch size (default auto)")
    train.add_argument("--target", metavar="COL",
                       help="target column: a header name or a number (negative counts from "
                            "the end); default the last column")
    train.add_argument("--test-size", type=_fraction, default=0.2,
                       help="held-out fraction (default 0.2)")
    train.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
    train.add_argument("--backend", choices=("cython", "numba", "numpy"),
                       help="kernel backend (default: the process default)")
    train.add_argument("--data-dir", help="directory of the sonar / MNIST files")
    train.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                       help="progress bar on stderr (auto: only on a terminal)")
    train.add_argument("--save", metavar="FILE", help="save the trained model (est.save)")
    train.set_defaults(handler=_train)
    return parser


def _dtype_name(text):
    if text not in ("float32", "float64"):
        raise ValueError(text)
    return text


def main(argv=None):
    """Run the command line; returns the exit status (``sys.exit(main())``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    args.argv = argv
    if getattr(args, "threads", "absent") is None:
        from fastnn._bench import machine

        args.threads = [machine.n_cores()]
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("fastnn: interrupted", file=sys.stderr)
        return 130
    except CommandError as exc:
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001  a user sees one line, never a traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"fastnn {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
