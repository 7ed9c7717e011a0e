"""The thread count of the BLAS that both compiled backends call.

The Cython kernels call BLAS through ``scipy.linalg.cython_blas``, and Numba's ``np.dot``
goes the same way, so both run on the OpenBLAS that scipy links. An epoch of large
batches is shared between fastnn's own threads, as many as BLAS may use now, each calling
BLAS single-threaded (docs/kernels.md, "Threads"): the kernels read the count, set it to
one for the epoch, and set it back.
"""

import ctypes
import functools
import os

# OpenBLAS's thread controls under the names of scipy's wheels (the ``scipy_`` prefix,
# 64-bit integers with the ``64_`` suffix) and of system builds.
_CONTROLS = (
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
)


@functools.lru_cache(maxsize=1)
def controls():
    """``(get, set)``: ctypes functions that read and set the BLAS thread count, or None
    when they cannot be found (another BLAS: every epoch then runs on the calling thread,
    and BLAS keeps its own threads).

    Looked up through the already loaded ``cython_blas`` module: a symbol lookup on a
    library also searches the libraries it links.
    """
    import scipy.linalg.cython_blas as cython_blas

    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_NOW", 0)
    try:
        library = ctypes.CDLL(cython_blas.__file__, mode=mode)
    except OSError:
        return None
    for get_name, set_name in _CONTROLS:
        try:
            get_threads = getattr(library, get_name)
            set_threads = getattr(library, set_name)
        except AttributeError:
            continue
        get_threads.argtypes = ()
        get_threads.restype = ctypes.c_int
        set_threads.argtypes = (ctypes.c_int,)
        set_threads.restype = None
        return get_threads, set_threads
    return None


def addresses():
    """The two functions' addresses, for compiled code, or None."""
    found = controls()
    if found is None:
        return None
    return tuple(ctypes.cast(function, ctypes.c_void_p).value for function in found)


def blas_threads():
    """The BLAS thread count now (what an epoch may share its batches between), or 1
    when the controls were not found."""
    found = controls()
    return found[0]() if found is not None else 1
