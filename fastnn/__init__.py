"""fastnn: compiled perceptrons, multilayer perceptrons and autoencoders.

Estimators follow scikit-learn's API; the kernels run in Cython (default), Numba or NumPy.
Importing fastnn loads neither the kernels nor scipy nor numba: they load on first use.
"""

from ._backend import available_backends, get_backend, set_backend, use_backend

__version__ = "0.1.0"

_LAZY = {
    "Perceptron": "fastnn.perceptron",
    "MLPClassifier": "fastnn.mlp",
    "MLPRegressor": "fastnn.mlp",
    "Autoencoder": "fastnn.autoencoder",
    "SparseAutoencoder": "fastnn.autoencoder",
    "DenoisingAutoencoder": "fastnn.autoencoder",
    "ContractiveAutoencoder": "fastnn.autoencoder",
    "load": "fastnn._persistence",
    "ConvergenceWarning": "fastnn._validation",
    "NotFittedError": "fastnn._validation",
}

__all__ = [
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "__version__",
    *_LAZY,
]


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
