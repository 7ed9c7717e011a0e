"""Save and load fitted estimators as a plain ``.npz`` file, never with pickle.

The file holds every fitted array of the estimator under its attribute name, plus one
entry ``__metadata__``: a JSON document with the format name and version, the class
name, ``get_params()``, the fitted scalar attributes and the dtype. ``load`` reads it with
``np.load(allow_pickle=False)``, so a file can never run code, and rebuilds the estimator
bit-identical.

Each estimator class says what to store (generic, so every estimator reuses this):

- ``_array_attributes``: names of fitted ndarray attributes (a missing one is skipped);
- ``_scalar_attributes``: names of fitted JSON-able attributes (numbers, strings, None,
  lists of numbers);
- optionally ``_extra_state()`` -> ``(scalars: dict, arrays: dict)`` and
  ``_load_extra_state(scalars, arrays)`` for state that is neither (the classifier's label
  coding, the optimiser's moments);
- optionally ``__setstate__`` (called with the rebuilt ``__dict__``, e.g. to make
  ``coefs_`` views of the flat buffer again).
"""

import json
import zipfile

import numpy as np

FORMAT_NAME = "fastnn-model"
FORMAT_VERSION = 1
_METADATA_KEY = "__metadata__"
_RANDOM_STATE_KEY = "__random_state_keys__"


def _to_json(value):
    """JSON-able form of a parameter or scalar attribute (tuples, random states tagged)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(item) for item in value]}
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _to_json(value.tolist()), "dtype": value.dtype.str}
    if isinstance(value, dict):  # e.g. class_weight; JSON objects would stringify the keys
        return {"__dict__": [[_to_json(key), _to_json(item)] for key, item in value.items()]}
    if isinstance(value, np.random.RandomState):
        _, _, position, has_gauss, cached_gaussian = value.get_state()
        return {"__random_state__": [int(position), int(has_gauss), float(cached_gaussian)]}
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save a value of type {type(value).__name__}: {value!r}")


def _from_json(value, arrays):
    if isinstance(value, list):
        return [_from_json(item, arrays) for item in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(_from_json(item, arrays) for item in value["__tuple__"])
        if "__dict__" in value:
            return {_from_json(key, arrays): _from_json(item, arrays) for key, item in value["__dict__"]}
        if "__ndarray__" in value:
            return np.array(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        if "__random_state__" in value:
            position, has_gauss, cached_gaussian = value["__random_state__"]
            random_state = np.random.RandomState()
            random_state.set_state(
                ("MT19937", arrays[_RANDOM_STATE_KEY], position, has_gauss, cached_gaussian)
            )
            return random_state
        if "__generator__" in value:
            state = value["__generator__"]
            kind = getattr(np.random, str(state["bit_generator"]), None)
            if not (isinstance(kind, type) and issubclass(kind, np.random.BitGenerator)):
                raise ValueError(f"unknown bit generator {state['bit_generator']!r}")
            bit_generator = kind()
            bit_generator.state = state
            return np.random.Generator(bit_generator)
        raise ValueError(f"unknown tagged value {value!r}")
    return value


def _storable_array(name, array):
    """Object arrays (e.g. classes given as Python objects) are stored as str or float."""
    array = np.asarray(array)
    if array.dtype != object:
        return array, None
    if all(isinstance(item, str) for item in array.ravel()):
        return array.astype(str), "object"
    try:
        return array.astype(np.float64), "object"
    except (TypeError, ValueError):
        raise TypeError(f"cannot save {name}: it holds objects that are neither strings nor numbers") from None


def save(estimator, path):
    """Write fitted ``estimator`` to ``path`` (exactly that name) as ``.npz`` + JSON.

    Parameters
    ----------
    estimator : fastnn estimator
        A fitted estimator.
    path : str or path-like
        Destination file; overwritten if it exists.
    """
    if not any(hasattr(estimator, name) for name in estimator._array_attributes):
        raise ValueError(f"This {type(estimator).__name__} is not fitted yet: nothing to save.")
    arrays, object_arrays = {}, []
    for name in estimator._array_attributes:
        if hasattr(estimator, name):
            arrays[name], kind = _storable_array(name, getattr(estimator, name))
            if kind == "object":
                object_arrays.append(name)
    scalars = {
        name: _to_json(getattr(estimator, name))
        for name in estimator._scalar_attributes
        if hasattr(estimator, name)
    }
    extra_scalars, extra_arrays = {}, {}
    if hasattr(estimator, "_extra_state"):
        extra_scalars, extra_arrays = estimator._extra_state()
    params = estimator.get_params(deep=False)
    if isinstance(params.get("random_state"), np.random.RandomState):
        arrays[_RANDOM_STATE_KEY] = params["random_state"].get_state()[1]
    for name, array in extra_arrays.items():
        arrays["extra:" + name] = array
    dtype = getattr(estimator, "_params", None)
    metadata = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "class": type(estimator).__name__,
        "params": {name: _to_json(value) for name, value in params.items()},
        "attributes": scalars,
        "extra": {name: _to_json(value) for name, value in extra_scalars.items()},
        "object_arrays": object_arrays,
        "dtype": None if dtype is None else dtype.dtype.name,
    }
    arrays[_METADATA_KEY] = np.array(json.dumps(metadata))
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def _estimator_class(name):
    import importlib

    import fastnn

    from ._params import ParamsMixin

    module_name = fastnn._LAZY.get(name)
    cls = None if module_name is None else getattr(importlib.import_module(module_name), name)
    if not (isinstance(cls, type) and issubclass(cls, ParamsMixin)):
        raise ValueError(f"the file holds an unknown estimator class {name!r}")
    return cls


def load(path):
    """Load an estimator written by ``est.save(path)``.

    Raises
    ------
    ValueError
        When the file is not a fastnn model (foreign, corrupt or truncated) or was written
        by a newer format version.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(
            f"{path!s} is not a readable fastnn model file (corrupt, truncated or not "
            f".npz): {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(contents, dict) or _METADATA_KEY not in contents:
        raise ValueError(f"{path!s} is not a fastnn model file: it has no {_METADATA_KEY} entry.")
    try:
        metadata = json.loads(str(contents.pop(_METADATA_KEY)))
        if metadata.get("format") != FORMAT_NAME:
            raise ValueError(f"format is {metadata.get('format')!r}, not {FORMAT_NAME!r}")
        if metadata.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"format version {metadata.get('version')!r}; this fastnn reads version "
                f"{FORMAT_VERSION}"
            )
        cls = _estimator_class(metadata["class"])
        params = {name: _from_json(value, contents) for name, value in metadata["params"].items()}
        estimator = cls(**params)
        state = dict(estimator.__dict__)
        state.update(
            (name, _from_json(value, contents)) for name, value in metadata["attributes"].items()
        )
        for name in cls._array_attributes:
            if name in contents:
                array = contents[name]
                state[name] = array.astype(object) if name in metadata["object_arrays"] else array
        extra_arrays = {
            name[len("extra:"):]: array for name, array in contents.items()
            if name.startswith("extra:")
        }
        extra_scalars = {
            name: _from_json(value, contents) for name, value in metadata["extra"].items()
        }
        if hasattr(estimator, "__setstate__"):
            estimator.__setstate__(state)
        else:
            estimator.__dict__.update(state)
        if hasattr(estimator, "_load_extra_state"):
            estimator._load_extra_state(extra_scalars, extra_arrays)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # json.JSONDecodeError is a ValueError; shapes that do not fit raise ValueError.
        raise ValueError(
            f"{path!s} is not a valid fastnn model file: {type(exc).__name__}: {exc}"
        ) from None
    return estimator
