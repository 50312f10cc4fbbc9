import sys
from pathlib import Path

import pytest

from afford.synth.correspondence import CorrSynthConfig, write_correspondence_dataset

sys.path.insert(0, str(Path(__file__).parent))

from tiny_data import write_tiny_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("tinycorr"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A tiny dataset from the synthetic writer (`afford synth correspondence`)."""
    root = tmp_path_factory.mktemp("synthcorr")
    cfg = CorrSynthConfig(size="tiny", views=4, categories=["kettle", "jug", "mug"])
    write_correspondence_dataset(root, cfg, progress=False)
    return root
