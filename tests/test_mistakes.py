"""What the suite says to the mistakes users make and the folders they keep: one line naming the cause and the fix,
never a traceback or a usage dump; and what it sends from their machine (nothing, unless asked)."""

import os
import subprocess
import sys

import pytest

from mobilenets.cli import main
from mobilenets.deploy.runtimes import TELEMETRY_ENV
from mobilenets.tasks.base import BaseTask


def test_profile_of_a_config_whose_size_is_left_to_the_data_ends_in_one_line():
    with pytest.raises(SystemExit, match="paper/dogs.yaml: ClassificationTask has no model yet: num_classes is left"):
        main(["profile", "--config", "paper/dogs.yaml"])


def test_profile_does_not_hide_an_attribute_error_of_a_broken_model(monkeypatch):
    """Only "the model is not built yet" becomes the one line; a defect in a model's code still shows itself."""
    def broken(self):
        raise AttributeError("'MobileNetV1' object has no attribute 'blocks'")

    monkeypatch.setattr(BaseTask, "profile_rows", broken)
    with pytest.raises(AttributeError, match="has no attribute 'blocks'"):
        main(["profile", "--config", "demo/dogs.yaml"])


@pytest.mark.parametrize("opted_in", [False, True])
def test_nncf_telemetry_is_off_unless_the_user_turns_it_on(opted_in, tmp_path):
    """NNCF as the suite imports it, in a fresh process (NNCF itself turns telemetry off under pytest): a stub that
    sends nothing by default, NNCF's real telemetry with ``MOBILENETS_TELEMETRY=1``. (``CI=true`` and a fresh home
    keep the real one, where it is built, from sending or writing anything during the test.)"""
    env = {key: value for key, value in os.environ.items() if key not in ("NNCF_CI", "NNCF_DEV", TELEMETRY_ENV)}
    env.update(CI="true", HOME=str(tmp_path))
    if opted_in:
        env[TELEMETRY_ENV] = "1"
    code = ("from mobilenets.deploy.runtimes import import_nncf; import_nncf(); "
            "import nncf.telemetry.wrapper as w; print(isinstance(w.telemetry, w.NNCFTelemetry))")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == str(opted_in)  # NNCF's stub is a MagicMock that sends nothing
