"""An MLP on the MNIST test images: accuracy and training speed of every available backend.

The 10,000 MNIST test images (28 x 28 pixels scaled to [0, 1]) are split into 8,000 for
training and 2,000 for testing. The same network (784-128-10, relu, softmax output, SGD with
Nesterov momentum, minibatches of 64) is trained with each available backend (cython, numba,
numpy) from the same initial weights; the table gives the test accuracy, the training
throughput in samples per second (epochs x training samples / wall time) and how far each
backend's weights are from the NumPy reference's in the same dtype. The backends are warmed
up first (Numba compiles on first use), outside the timing. float32 input trains in float32:
faster, and the backends agree less closely (rounding differences grow over the epochs).

Run ``python examples/mlp_mnist.py`` (``--quick`` for the tests, ``--full`` for 30 epochs on
the whole split). ``--threads 1`` is often faster on a busy machine.
"""

import warnings

import numpy as np

import _common
import fastnn
from fastnn.datasets import load_mnist

SETTINGS = {  # mode: (training samples, test samples, epochs, dtypes)
    "quick": (1000, 500, 2, ("float64",)),
    "default": (8000, 2000, 10, ("float64", "float32")),
    "full": (8000, 2000, 30, ("float64", "float32")),
}


def make_network(backend, n_epochs, seed):
    return fastnn.MLPClassifier(
        hidden_layer_sizes=(128,), activation="relu", solver="sgd", batch_size=64,
        learning_rate_init=0.05, momentum=0.9, alpha=1e-4, max_iter=n_epochs,
        n_iter_no_change=n_epochs + 1, random_state=seed, backend=backend)


def main():
    def add_arguments(parser):
        parser.add_argument("--seed", type=int, default=0)

    args = _common.parse_args(__doc__.splitlines()[0], add_arguments)
    n_train, n_test, n_epochs, dtypes = SETTINGS[args.mode]
    warnings.simplefilter("ignore", category=UserWarning)  # ConvergenceWarning at max_iter

    _common.require_file(args.data_dir / "t10k-images-idx3-ubyte.gz")
    X, y = load_mnist(args.data_dir)
    order = np.random.RandomState(args.seed).permutation(len(X))
    train, test = order[:n_train], order[len(X) - n_test:]
    backends = fastnn.available_backends()
    print(f"fastnn {fastnn.__version__}, mode {args.mode}, backends available: {backends}")
    print(f"MNIST t10k: {n_train} train / {n_test} test, 784-128-10 relu, SGD batch 64, "
          f"lr 0.05, Nesterov momentum 0.9, {n_epochs} epochs\n")

    rows, reference = [], {}
    for dtype in dtypes:
        X_train, X_test = X[train].astype(dtype), X[test].astype(dtype)
        for backend in ["numpy", *(b for b in backends if b != "numpy")]:
            make_network(backend, 1, args.seed).fit(X_train[:256], y[train][:256])  # warm-up
            network = make_network(backend, n_epochs, args.seed)
            with _common.Timer() as timer:
                network.fit(X_train, y[train])
            weights = np.concatenate([c.ravel() for c in network.coefs_])
            reference.setdefault(dtype, weights)
            distance = np.max(np.abs(weights - reference[dtype])) / np.max(np.abs(weights))
            rows.append([backend, dtype, network.score(X_test, y[test]),
                         n_epochs * n_train / timer.seconds, timer.seconds, distance])
            print(f"  {backend} {dtype}: {timer.seconds:.2f} s", flush=True)

    print()
    _common.print_table(
        ["backend", "dtype", "test acc", "samples/s", "seconds", "max |W - W_numpy| / max |W|"],
        rows, ["", "", ".4f", ",.0f", ".2f", ".1e"])
    fastest = max(rows, key=lambda row: row[3])
    print(f"\nfastest: {fastest[0]} {fastest[1]}, {fastest[3]:,.0f} samples/s, "
          f"{fastest[3] / rows[0][3]:.1f}x the NumPy reference")


if __name__ == "__main__":
    main()
