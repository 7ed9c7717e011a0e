"""The cdef enums of csrc/_codes.pxd agree with fastnn/_codes.py (the compiled module
reports the values it was built with)."""

import pytest

from fastnn import _codes
from conftest import load_backend

PYTHON_CODES = {
    name: getattr(_codes, name)
    for name in dir(_codes)
    if name.isupper() and isinstance(getattr(_codes, name), int)
}


def test_python_tables_use_the_constants():
    assert set(_codes.ACTIVATIONS.values()) <= set(PYTHON_CODES.values())
    for table in (_codes.ACTIVATIONS, _codes.LOSSES, _codes.OPTIMIZERS, _codes.NOISES):
        assert len(set(table.values())) == len(table)  # no two names share a code


@pytest.mark.parametrize("name", sorted(PYTHON_CODES))
def test_compiled_codes_match_python(name):
    compiled = load_backend("cython").codes()
    assert name in compiled, f"{name} is missing from csrc/_codes.pxd"
    assert compiled[name] == PYTHON_CODES[name]


def test_no_compiled_code_without_python_twin():
    compiled = load_backend("cython").codes()
    assert set(compiled) == set(PYTHON_CODES)
