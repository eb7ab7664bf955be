"""A sixth task that lives outside the suite: day/night scene classification, in the same rooms as the five.

It touches no package of the suite; the suite reaches it through the task protocol (docs/design.md)."""
from scenes.synthetic import write_scenes  # noqa: E402,F401 (the synthetic writer `mobilenets synth scenes` calls)
