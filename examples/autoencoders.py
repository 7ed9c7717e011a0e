"""Four autoencoders on MNIST digits: undercomplete, sparse (KL), denoising, contractive.

Each one is a 784-64-784 network with logistic hidden units trained by Adam on the first
images of the MNIST test set and evaluated on the images that follow them (held out):

- undercomplete: ``Autoencoder`` -- the 64-unit bottleneck alone forces a compressed code;
- sparse: ``SparseAutoencoder`` -- adds ``beta * sum_j KL(rho || rho_hat_j)``, which pulls
  each code unit's mean activation ``rho_hat_j`` down to ``rho = 0.05``;
- denoising: ``DenoisingAutoencoder`` -- sees inputs with 30% of the pixels zeroed (new
  ones every epoch) and is trained to output the clean digit;
- contractive: ``ContractiveAutoencoder`` -- adds ``lambda * ||d code / d x||_F^2``, which
  makes the code insensitive to small changes of the input.

For each it prints the reconstruction error (mean squared error per pixel) of clean and of
masked held-out digits (against the clean ones), the mean code activation and the mean
Frobenius norm of the encoder's Jacobian ``J = diag(g'(a)) W^T``, ``||J||_F^2 = sum_j
g'(a_j)^2 ||W_:j||^2``: the sparse model has the lowest mean activation, the denoising one
restores masked digits best, the contractive one has the smallest Jacobian.

Run ``python examples/autoencoders.py [--png grid.png]`` (``--quick`` for the tests,
``--full`` for 9000 training images and more epochs). With matplotlib installed,
``--png`` saves a grid: originals, masked inputs, then each model's reconstruction of the
masked inputs.
"""

import warnings

import numpy as np

import _common
import fastnn
from fastnn.datasets import MNIST_IMAGES_FILE, load_mnist

CODE_UNITS = 64
MASK_LEVEL = 0.3
SIZES = {  # mode -> (training images, held-out images, epochs)
    "quick": (300, 100, 2),
    "default": (2000, 1000, 10),
    "full": (9000, 1000, 60),
}


def make_models(n_epochs, seed):
    """The four autoencoders, same size, optimiser and seed."""
    common = dict(hidden_layer_sizes=(CODE_UNITS,), activation="logistic", solver="adam",
                  learning_rate_init=0.005, batch_size=128, max_iter=n_epochs,
                  random_state=seed)
    return {
        "undercomplete": fastnn.Autoencoder(**common),
        "sparse (KL)": fastnn.SparseAutoencoder(sparsity_target=0.05, sparsity_weight=1.0,
                                                **common),
        "denoising": fastnn.DenoisingAutoencoder(noise_level=MASK_LEVEL, **common),
        "contractive": fastnn.ContractiveAutoencoder(contraction_weight=0.1, **common),
    }


def jacobian_norm(model, X):
    """Mean over ``X`` of ``||d code / d x||_F`` of a one-hidden-layer logistic encoder."""
    W = model.coefs_[0]
    code = model.transform(X)
    slopes = code * (1.0 - code)  # logistic'(a) = o (1 - o)
    squared = (slopes ** 2) @ (W ** 2).sum(axis=0)
    return float(np.mean(np.sqrt(squared)))


def masked(X, level, seed):
    return np.where(np.random.default_rng(seed).random(X.shape) < level, 0.0, X)


def save_grid(path, originals, corrupted, reconstructions):
    """Rows: originals, masked inputs, each model's reconstruction of the masked inputs."""
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: no picture saved to {path}")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("original", originals), (f"masked {MASK_LEVEL:.0%}", corrupted),
            *reconstructions.items()]
    n_columns = len(originals)
    figure, axes = plt.subplots(len(rows), n_columns, figsize=(n_columns, 1.1 * len(rows)))
    for row, (title, images) in enumerate(rows):
        for column in range(n_columns):
            axis = axes[row, column]
            axis.imshow(np.clip(images[column], 0, 1).reshape(28, 28), cmap="gray_r",
                        vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    print(f"saved {path}")


def main():
    def add_arguments(parser):
        parser.add_argument("--seed", type=int, default=0, help="training and noise seed")
        parser.add_argument("--png", help="save a grid of originals / masked / "
                                          "reconstructions to this PNG file")

    args = _common.parse_args(__doc__.splitlines()[0], add_arguments)
    n_train, n_test, n_epochs = SIZES[args.mode]
    warnings.simplefilter("ignore", category=UserWarning)  # max_iter reached on purpose

    _common.require_file(args.data_dir / MNIST_IMAGES_FILE)
    X, _ = load_mnist(args.data_dir, n=n_train + n_test)
    X_train, X_test = X[:n_train], X[n_train:]
    X_test_masked = masked(X_test, MASK_LEVEL, args.seed + 1)
    print(f"fastnn {fastnn.__version__}, backend {fastnn.get_backend()}, mode {args.mode}")
    print(f"MNIST: {n_train} training / {n_test} held-out images of 784 pixels in [0, 1]; "
          f"784-{CODE_UNITS}-784, logistic code, Adam, {n_epochs} epochs\n")

    rows, reconstructions = [], {}
    for name, model in make_models(n_epochs, args.seed).items():
        with _common.Timer() as timer:
            model.fit(X_train)
        restored = model.predict(X_test_masked)
        reconstructions[name] = restored[:10]
        rows.append([
            name,
            -model.score(X_test),
            float(np.mean((restored - X_test) ** 2)),
            float(model.transform(X_test).mean()),
            jacobian_norm(model, X_test),
            timer.seconds,
        ])
    _common.print_table(
        ["model", "MSE clean", "MSE masked->clean", "mean code", "mean ||J||_F", "fit s"],
        rows, ["", ".5f", ".5f", ".3f", ".2f", ".1f"],
    )
    if args.png:
        save_grid(args.png, X_test[:10], X_test_masked[:10], reconstructions)


if __name__ == "__main__":
    main()
