"""Shared fixtures for the kernel-side widget tests: a small trained classifier and a session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo():
    from geowidgets.datasets import toy_demo

    return toy_demo("blobs", n=300, epochs=10, seed=0)


@pytest.fixture()
def session(demo):
    from geowidgets.session import Session

    return Session(demo.model, demo.inputs, demo.labels, layers=demo.layers, reference=demo.train_mask, k_max=20)
