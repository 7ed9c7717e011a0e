"""The Numba backend as a fallback: automatic selection, lazy import, uncached JIT.

Its numerical equivalence with the reference is tests/test_equivalence.py (the
``fast_backend`` fixture runs it for numba); here are the numba-specific paths it does not
reach: backend selection when the compiled extension (or numba) is missing, which needs a
fresh interpreter, the fallback when Numba has no writable cache directory, one compiled
signature per dtype, and the parts of the kernels that only deep networks or big inputs
exercise. Subprocesses import numba but compile nothing big, to stay fast.
"""

import json
import os
import textwrap
import types

import numpy as np
import pytest

from fastnn import _codes
from fastnn._network import as_layer_units, glorot_uniform_init

from conftest import load_backend, run_python


def run_child(code, **env_overrides):
    """Run ``code`` in a fresh interpreter using this fastnn; return its last stdout line as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNN_BACKEND", "PYTHONWARNINGS")}
    env.update(env_overrides)
    result = run_python(["-c", textwrap.dedent(code)], env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# The child blocks modules by putting None in sys.modules (then `import` raises
# ImportError), chooses the default backend twice and reports the RuntimeWarnings.
CHOOSE_WITH_BLOCKED_MODULES = """
    import json, sys, warnings
    for name in {blocked!r}:
        sys.modules[name] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastnn
        from fastnn._backend import kernels
        first = fastnn.get_backend()
        second = fastnn.get_backend()
        module = kernels().__name__
    print(json.dumps({{
        "backend": first, "again": second, "module": module,
        "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
    }}))
"""


def test_missing_extension_falls_back_to_numba_with_one_warning():
    load_backend("numba")
    report = run_child(CHOOSE_WITH_BLOCKED_MODULES.format(blocked=["fastnn._kernels"]))
    assert report["backend"] == report["again"] == "numba"
    assert report["module"] == "fastnn._kernels_numba"
    assert len(report["warnings"]) == 1, report["warnings"]
    message = report["warnings"][0]
    assert "numba backend" in message
    assert "cython: ModuleNotFoundError" in message  # the reason the extension did not load


def test_missing_extension_and_numba_fall_back_to_numpy_with_one_warning():
    report = run_child(
        CHOOSE_WITH_BLOCKED_MODULES.format(blocked=["fastnn._kernels", "numba"]))
    assert report["backend"] == report["again"] == "numpy"
    assert report["module"] == "fastnn._kernels_ref"
    assert len(report["warnings"]) == 1, report["warnings"]
    message = report["warnings"][0]
    assert "numpy backend" in message
    assert "cython: ModuleNotFoundError" in message
    assert "numba: ModuleNotFoundError" in message


def test_cython_backend_never_imports_numba():
    load_backend("cython")
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_BACKEND"}
    result = run_python(
        ["-c", "import fastnn, sys; fastnn.get_backend(); print('numba' in sys.modules)"],
        env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_no_writable_cache_directory_still_imports_and_runs():
    """Numba raises at decoration when no cache locator has a writable directory.

    NUMBA_CACHE_LOCATOR_CLASSES=ZipCacheLocator leaves only the locator for sources inside
    zip files, which does not apply: exactly the error of a read-only install (a read-only
    directory cannot be simulated here, the tests may run as root).
    """
    load_backend("numba")
    report = run_child(
        """
        import json, warnings
        import numpy as np
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import fastnn
            fastnn.set_backend("numba")
            from fastnn._backend import kernels
            k = kernels()
        X = np.arange(12.0).reshape(3, 4)
        out = np.empty_like(X)
        k.corrupt(X, np.arange(3), 1, 0.5, 7, 0, out)
        print(json.dumps({
            "reason": k.CACHE_DISABLED_REASON,
            "cached": [d._cache.__class__.__name__ for d in (k._corrupt, k._sgd_epoch)],
            "kept": int(np.sum(out == X)), "zeroed": int(np.sum(out == 0)),
            "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
        }))
        """,
        NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator",
    )
    assert "no locator available" in report["reason"]
    assert report["cached"] == ["NullCache", "NullCache"]
    assert report["kept"] + report["zeroed"] >= 12 and report["zeroed"] > 0
    assert len(report["warnings"]) == 1 and "cannot be cached" in report["warnings"][0]


def test_jit_helper_falls_back_to_uncached(monkeypatch):
    module = load_backend("numba")
    numba = pytest.importorskip("numba")
    calls = []
    real_njit = numba.njit

    def njit_without_cache_dir(**options):
        calls.append(options)
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available")
        return real_njit(**options)

    monkeypatch.setattr(module, "numba", types.SimpleNamespace(njit=njit_without_cache_dir))
    monkeypatch.setattr(module, "CACHE_DISABLED_REASON", None)
    with pytest.warns(RuntimeWarning, match="cannot be cached"):
        add_one = module._jit(lambda x: x + 1)
    assert add_one(41) == 42
    plain = {"nogil": True, "error_model": "numpy", "fastmath": {"contract"}}
    assert calls == [{**plain, "cache": True}, plain]
    # Once the reason is known, later kernels go straight to the uncached njit.
    calls.clear()
    assert module._jit(lambda x: 2 * x)(21) == 42
    assert calls == [plain]


def test_kernels_are_nogil():
    module = load_backend("numba")
    for name in ("_sgd_epoch", "_loss_and_gradient", "_forward", "_corrupt", "_perceptron_epoch"):
        assert getattr(module, name).targetoptions["nogil"] is True


def test_kernels_take_no_fast_math_liberty_but_fused_multiply_adds():
    # FMA contraction only (as GCC compiles the Cython kernels); the perceptron's dot
    # product is reassociated instead. No finite-math or reciprocal assumptions anywhere.
    module = load_backend("numba")
    for name in ("_sgd_epoch", "_loss_and_gradient", "_forward", "_corrupt",
                 "_perceptron_epoch"):
        assert getattr(module, name).targetoptions["fastmath"] == {"contract"}
    assert module._row_dot.targetoptions["fastmath"] == {"reassoc"}


def _small_problem(dtype, hidden=(5, 4), n_samples=9, n_outputs=3):
    rng = np.random.RandomState(0)
    units = as_layer_units(6, hidden, n_outputs)
    params = glorot_uniform_init(units, "tanh", rng, dtype)
    X = rng.rand(n_samples, 6).astype(dtype)
    Y = rng.rand(n_samples, n_outputs).astype(dtype)
    return units, params, X, Y, np.ones(n_samples, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_signature_per_dtype_whatever_the_callers_types(dtype):
    """Python ints for floats, ints for bools, read-only inputs: no extra compilation."""
    module = load_backend("numba")
    units, params, X, Y, weights = _small_problem(dtype)
    order = np.arange(len(X), dtype=np.int64)
    penalized = np.zeros(2, dtype=np.int64)
    workspace = module.make_workspace(units, 4, dtype, False)
    state = [np.zeros_like(params), np.zeros_like(params)]

    def epoch(learning_rate, momentum, nesterov, alpha, X, order):
        return module.sgd_epoch(
            params, units, _codes.TANH, _codes.IDENTITY, _codes.SQUARED_ERROR, X, Y, weights,
            order, 4, _codes.SGD, learning_rate, momentum, nesterov, 0.9, 0.999, 1e-8, 0,
            *state, alpha, 0.0, 0.0, 0.05, 0.0, penalized, _codes.NO_NOISE, 0.0, 0, 0,
            workspace)

    epoch(0.01, 0.9, True, 1e-4, X, order)
    n_signatures = len(module._sgd_epoch.signatures)
    read_only_X, read_only_order = X.copy(), order.copy()
    read_only_X.flags.writeable = read_only_order.flags.writeable = False
    loss_sum, _, ok = epoch(1, 0, 1, 0, read_only_X, read_only_order)
    assert ok == 1 and np.isfinite(loss_sum)
    assert len(module._sgd_epoch.signatures) == n_signatures


def test_workspace_too_small_is_a_clear_error():
    module = load_backend("numba")
    units, params, X, Y, weights = _small_problem(np.float64)
    small = module.make_workspace(units, 2, np.float64, False)
    with pytest.raises(ValueError, match="workspace holds"):
        module.loss_and_gradient(
            params, units, _codes.TANH, _codes.IDENTITY, _codes.SQUARED_ERROR, X, Y, weights,
            0.0, 0.0, 0.0, 0.05, 0.0, np.zeros(2, dtype=np.int64), _codes.NO_NOISE, 0.0, 0,
            0, np.empty_like(params), small)
    with_contraction = module.make_workspace(units, 4, np.float64, True)
    without = module.make_workspace(units, 4, np.float64, False)
    assert len(with_contraction) > len(without)


def test_deep_contractive_gradient_matches_reference():
    """Three penalised layers: the adjoint buffers alternate twice (deeper than the suite)."""
    numba_kernels = load_backend("numba")
    reference = load_backend("numpy")
    units, params, X, _, _ = _small_problem(np.float64, hidden=(5, 4, 3, 4), n_outputs=6)
    weights = np.random.RandomState(1).uniform(0.5, 1.5, len(X))
    penalized = np.array([1, 1, 1, 0], dtype=np.int64)
    results = []
    for module in (numba_kernels, reference):
        grad = np.empty_like(params)
        workspace = module.make_workspace(units, len(X), np.float64, True)
        values = module.loss_and_gradient(
            params, units, _codes.TANH, _codes.IDENTITY, _codes.SQUARED_ERROR, X, X, weights,
            0.1, 0.01, 0.0, 0.05, 0.2, penalized, _codes.GAUSSIAN_NOISE, 0.1, 2**64 - 1,
            3, grad, workspace)
        results.append((values, grad))
    (values, grad), (expected_values, expected_grad) = results
    np.testing.assert_allclose(values, expected_values, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)


def test_forward_in_row_blocks_on_read_only_input():
    """More rows than one forward block, from a read-only X, equals the reference."""
    numba_kernels = load_backend("numba")
    reference = load_backend("numpy")
    units, params, _, _, _ = _small_problem(np.float64)
    X = np.random.RandomState(2).rand(numba_kernels._FORWARD_BLOCK_ROWS + 3, 6)
    X.flags.writeable = False
    outputs = []
    for module in (numba_kernels, reference):
        out = np.empty((len(X), 4))
        module.forward(params, units, _codes.RELU, _codes.SOFTMAX, 0, 2, X, out)
        outputs.append(out)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-12)
    empty = np.empty((0, 4))
    numba_kernels.forward(params, units, _codes.RELU, _codes.SOFTMAX, 0, 2, X[:0], empty)


def test_noise_seeds_beyond_int64_match_reference():
    numba_kernels = load_backend("numba")
    reference = load_backend("numpy")
    X = np.random.RandomState(3).rand(4, 5)
    rows = np.array([0, 7, 2**40, 3], dtype=np.int64)
    for seed, epoch in ((2**64 - 1, 2**63 + 5), (-1, 0), (2**63, 1)):
        outputs = []
        for module in (numba_kernels, reference):
            out = np.empty_like(X)
            module.corrupt(X, rows, _codes.GAUSSIAN_NOISE, 0.5, seed, epoch, out)
            outputs.append(out)
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-15)
        assert not np.allclose(outputs[0], X)
