"""The warnings policy of the tests (pyproject.toml): lth's own deprecations fail, others' are silenced one by one."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("module", ["lth", "lth.config.cell", "lth.report.winners"])
@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning])
def test_a_deprecation_warning_of_lth_fails_the_test(module: str, category: type[Warning]) -> None:
    with pytest.raises(category, match="going away"):
        warnings.warn_explicit("going away", category, f"{module.replace('.', '/')}.py", 1, module=module)


@pytest.mark.parametrize("module", ["lthx", "numpy", "keras.src.ops"])
def test_a_deprecation_warning_of_another_package_does_not(module: str) -> None:
    with pytest.warns(DeprecationWarning, match="going away"):
        warnings.warn_explicit("going away", DeprecationWarning, f"{module}.py", 1, module=module)


def test_only_the_named_third_party_warning_is_silenced() -> None:
    keras_core = {"filename": "core.py", "lineno": 172, "module": "keras.src.backend.tensorflow.core"}
    with warnings.catch_warnings(record=True) as seen:  # the policy's filters stay in force inside
        warnings.warn_explicit("__array__ implementation doesn't accept a copy keyword, so passing copy=False failed.",
                               DeprecationWarning, **keras_core)
        warnings.warn_explicit("something else", DeprecationWarning, **keras_core)
    assert [str(warning.message) for warning in seen] == ["something else"]
