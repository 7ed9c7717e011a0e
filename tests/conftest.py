"""Shared fixtures: one test body runs over every backend (ids cython, numba, numpy).

A backend that cannot be loaded is skipped with the reason -- unless it is named in
FASTNN_REQUIRE_BACKENDS (comma separated; CI sets it), where its absence is a failure, so
that a broken build can never hide behind skipped tests.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import _backend

DATA_DIR = Path(os.environ.get("FASTNN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _required_backends():
    value = os.environ.get("FASTNN_REQUIRE_BACKENDS", "")
    return {name.strip() for name in value.split(",") if name.strip()}


def load_backend(name):
    """The kernel module of ``name``, or skip (fail when required) saying why not."""
    module = _backend._load(name)
    if module is None:
        reason = f"{name} backend unavailable: {_backend._import_errors.get(name)}"
        if name in _required_backends():
            pytest.fail(reason)
        pytest.skip(reason)
    return module


@pytest.fixture(params=list(_backend.BACKENDS))
def backend(request):
    """Name of a loadable backend; tests take its kernels with ``kernels(backend)``."""
    load_backend(request.param)
    return request.param


@pytest.fixture(params=[b for b in _backend.BACKENDS if b != "numpy"])
def fast_backend(request):
    """A compiled backend (cython or numba), to be compared with the numpy oracle."""
    load_backend(request.param)
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def data_dir():
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared data directory not found at {DATA_DIR}")
    return DATA_DIR


# The directory holding the fastnn under test: site-packages after `pip install .`, the
# checkout with an in-place build. Child interpreters must import that same fastnn, so they
# run from there (with `python -c` / `-m` the current directory comes first on sys.path,
# and a checkout's fastnn/ has no compiled extension unless it was built in place).
FASTNN_PARENT = str(Path(fastnn.__file__).resolve().parents[1])


def run_python(args, env=None, **kwargs):
    """Run ``python ARGS`` in a child that imports the same fastnn as these tests."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [FASTNN_PARENT, env.get("PYTHONPATH")]))
    kwargs.setdefault("cwd", FASTNN_PARENT)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([sys.executable, *args], env=env, **kwargs)
