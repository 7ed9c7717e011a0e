"""Build the Cython kernels in csrc/ into extension modules inside the fastnn package.

Environment switches:
  FASTNN_NO_EXTENSIONS=1  build a pure-Python package (the Numba or NumPy backend is used)
  FASTNN_DEBUG=1          compile with boundscheck/wraparound on and -O0 -g, for the tests
  FASTNN_PORTABLE=1       do not compile for the building machine's CPU (no -march=native)
"""

import glob
import os

from setuptools import setup


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def extensions():
    if _flag("FASTNN_NO_EXTENSIONS"):
        return []
    import numpy
    from Cython.Build import cythonize
    from setuptools import Extension

    debug = _flag("FASTNN_DEBUG")
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,
        "nonecheck": False,
        "cpow": True,
    }
    if debug:
        compile_args = ["-O0", "-g"]
    else:
        # -fno-math-errno: the kernels never read errno, and setting it keeps sqrt out
        # of vectorised loops. -fno-trapping-math: nothing reads the floating-point
        # exception flags, and without it GCC keeps a compare-and-select (the clamp in
        # _exp) as a branch, so the logistic and tanh loops stay scalar. 512-bit
        # vectors where the CPU has them: the online update is bound by stores, and a
        # zmm store moves twice a ymm's bytes (measured: W2 about 10% faster).
        compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math"] + (
            [] if _flag("FASTNN_PORTABLE") else ["-march=native", "-mprefer-vector-width=512"])
    modules = []
    for source in sorted(glob.glob(os.path.join("csrc", "*.pyx"))):
        name = os.path.splitext(os.path.basename(source))[0]
        modules.append(
            Extension(
                f"fastnn.{name}",
                [source],
                include_dirs=[numpy.get_include(), "csrc"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
                extra_compile_args=compile_args,
            )
        )
    return cythonize(
        modules,
        compiler_directives=directives,
        include_path=["csrc"],
        # A debug build must not reuse the optimised C files, and vice versa.
        force=debug,
    )


setup(ext_modules=extensions())
