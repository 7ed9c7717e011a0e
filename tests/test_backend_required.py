"""CI guard: the backends named in FASTNN_REQUIRE_BACKENDS must load and the first must be active."""

import os

import pytest

import fastnn


def test_required_backends_load_and_default_is_first():
    required = [n.strip() for n in os.environ.get("FASTNN_REQUIRE_BACKENDS", "").split(",") if n.strip()]
    if not required:
        pytest.skip("FASTNN_REQUIRE_BACKENDS is not set (CI sets it)")
    available = fastnn.available_backends()
    missing = [name for name in required if name not in available]
    assert not missing, f"required backends failed to load: {missing} ({fastnn._backend._import_errors})"
    assert fastnn.get_backend() == required[0]
