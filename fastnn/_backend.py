"""Choose, expose and switch the kernel backends (SPEC 2.2).

Three modules implement the same kernels with the same names and argument order
(docs/kernels.md): ``fastnn._kernels`` (compiled from ``csrc/``), ``fastnn._kernels_numba``
and ``fastnn._kernels_ref`` (the NumPy oracle). Nothing is imported until a kernel is
first needed, so that ``import fastnn`` stays as cheap as ``import numpy``: the compiled
module pulls in ``scipy.linalg`` for BLAS and the Numba one pulls in numba.
"""

import contextlib
import importlib
import os
import threading
import warnings

BACKENDS = ("cython", "numba", "numpy")
_MODULES = {
    "cython": "fastnn._kernels",
    "numba": "fastnn._kernels_numba",
    "numpy": "fastnn._kernels_ref",
}

_lock = threading.RLock()
_active = None  # name of the process-wide backend once chosen
_import_errors = {}  # backend name -> reason it could not be loaded


def _check_name(name):
    if name not in BACKENDS:
        raise ValueError(
            f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)}."
        )
    return name


def _load(name):
    """Import a backend's kernel module, or return None and remember why not."""
    try:
        return importlib.import_module(_MODULES[name])
    except Exception as exc:  # a broken build can raise more than ImportError
        _import_errors[name] = f"{type(exc).__name__}: {exc}"
        return None


def kernels(name=None):
    """The kernel module of backend ``name`` (the active backend when None)."""
    name = get_backend() if name is None else _check_name(name)
    module = _load(name)
    if module is None:
        raise RuntimeError(
            f"The {name} backend is not available ({_import_errors[name]})."
        )
    return module


def available_backends():
    """Names of the backends that import on this machine, fastest first."""
    return [name for name in BACKENDS if _load(name) is not None]


def _choose_default():
    requested = os.environ.get("FASTNN_BACKEND", "").strip().lower()
    if requested:
        _check_name(requested)
        if _load(requested) is None:
            raise RuntimeError(
                f"FASTNN_BACKEND={requested} but that backend is not available "
                f"({_import_errors[requested]})."
            )
        return requested
    for name in BACKENDS:
        if _load(name) is not None:
            if name != "cython":
                reasons = "; ".join(f"{n}: {_import_errors[n]}" for n in _import_errors)
                warnings.warn(
                    f"fastnn is using the {name} backend because the faster ones "
                    f"could not be loaded ({reasons}).",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return name
    raise RuntimeError("No fastnn backend could be loaded.")  # numpy always loads


def get_backend():
    """Name of the process-wide backend (chosen on first call: cython, numba, numpy)."""
    global _active
    with _lock:
        if _active is None:
            _active = _choose_default()
        return _active


def set_backend(name):
    """Make ``name`` the process-wide backend; raises if it is unknown or missing."""
    global _active
    _check_name(name)
    kernels(name)
    with _lock:
        _active = name


@contextlib.contextmanager
def use_backend(name):
    """Context manager: use backend ``name`` inside the block, then restore."""
    previous = get_backend()
    set_backend(name)
    try:
        yield name
    finally:
        set_backend(previous)
