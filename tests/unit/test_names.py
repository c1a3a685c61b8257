"""Public names of geowidgets.geometry: one word per concept, result types named for what they hold.

The old ``...Result`` names and the old keywords (``H=``, ``y=``, ``Y=``) keep working for one
release with a ``DeprecationWarning`` (docs/architecture.md#names).
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import numpy as np
import pytest

import geowidgets.geometry as geo

OLD_TO_NEW = {
    "AgreementResult": "LabelAgreement",
    "DeviationResult": "KNNDeviation",
    "LoDDResult": "LoDDScores",
    "MeanShiftResult": "MeanShiftDeviation",
    "MSTResult": "MSTSeparability",
    "NCResult": "NeuralCollapse",
    "TiltResult": "BoundaryTilt",
}


@pytest.mark.parametrize(("old", "new"), sorted(OLD_TO_NEW.items()))
def test_old_result_names_are_deprecated_aliases(old, new):
    with pytest.warns(DeprecationWarning, match=new):
        value = getattr(geo, old)
    assert value is getattr(geo, new)
    with pytest.warns(DeprecationWarning):
        exec(f"from geowidgets.geometry import {old}", {})
    assert old not in geo.__all__ and new in geo.__all__


def _public():
    return {name: getattr(geo, name) for name in geo.__all__}


def test_no_public_result_type_is_named_result():
    classes = [name for name, obj in _public().items() if inspect.isclass(obj)]
    assert classes, "no public classes found"
    assert [name for name in classes if name.endswith("Result")] == []


def test_public_functions_use_one_word_per_concept():
    offenders = []
    for name, obj in _public().items():
        if not inspect.isfunction(obj):
            continue
        params = inspect.signature(obj).parameters
        for bad in ("H", "y", "Z", "features", "label", "n_neighbours"):
            if bad in params:
                offenders.append(f"{name}({bad})")
    assert offenders == []


def _fields(result):
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}


def test_old_keywords_warn_and_give_the_same_result():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    X = rng.normal(size=(60, 4)) + 3 * np.eye(4)[labels]

    with pytest.warns(DeprecationWarning, match="'H'"):
        old = geo.neural_collapse(H=X, labels=labels)
    new = geo.neural_collapse(X, labels)
    for key, value in _fields(new).items():
        np.testing.assert_array_equal(np.asarray(_fields(old)[key], dtype=object), np.asarray(value, dtype=object))

    with pytest.warns(DeprecationWarning, match="'y'"):
        old_dsmi = geo.dsmi(X, y=labels)
    assert old_dsmi == geo.dsmi(X, labels)

    ref = rng.normal(size=(30, 2))
    moved = 2.0 * ref[:, ::-1] + 1.0
    with pytest.warns(DeprecationWarning, match="'Y'"):
        old_layout = geo.align_layout(Y=moved, reference=ref)
    np.testing.assert_array_equal(old_layout, geo.align_layout(moved, ref))


def test_old_and_new_keyword_together_raise():
    X = np.random.default_rng(1).normal(size=(20, 3))
    labels = np.repeat([0, 1], 10)
    with pytest.raises(TypeError, match="'H' and 'X'"):
        geo.neural_collapse(X=X, H=X, labels=labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        geo.neural_collapse(X=X, labels=labels)  # the new keyword alone does not warn
