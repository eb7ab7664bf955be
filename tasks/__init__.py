"""The paper's Section 4 applications, one sub-package per task, all driven by the ``mobilenets`` command."""
