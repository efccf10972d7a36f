import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

DECKS = Path(__file__).parent / "decks"


@pytest.fixture(scope="session", autouse=True)
def sky130_linked():
    from cimlut.paths import link_models
    return link_models()


@pytest.fixture
def decks():
    return DECKS
