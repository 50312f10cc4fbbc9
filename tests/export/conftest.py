import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import correspondence_checkpoint, grounding_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def grounding_ckpt(tmp_path_factory):
    return grounding_checkpoint(tmp_path_factory.mktemp("ground_ckpt"))


@pytest.fixture(scope="session")
def corr_ckpt(tmp_path_factory):
    return correspondence_checkpoint(tmp_path_factory.mktemp("corr_ckpt"))
