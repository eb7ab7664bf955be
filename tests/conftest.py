"""Fixtures several test modules share."""

import os

import pytest
from helpers import DOGS, FACES, QUICK

from mobilenets.cli import main


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """A dogs and a face-attributes checkpoint (alpha 0.25, 48 px), their data beside them; the folder."""
    folder = tmp_path_factory.mktemp("checkpoints")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for name, config in (("dogs", DOGS), ("faces", FACES)):
            main(["fit", *config, *QUICK, "--trainer.default_root_dir", name, "--trainer.callbacks",
                  "pytorch_lightning.callbacks.ModelCheckpoint", "--trainer.callbacks.dirpath", name,
                  "--trainer.callbacks.filename", "model"])
    finally:
        os.chdir(cwd)
    return folder
