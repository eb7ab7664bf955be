"""ScenesDataModule: the ImageFolder tree read into the suite's image records."""

from pathlib import Path
from typing import Any

from mobilenets.tasks.data.datamodule import BaseDataModule
from mobilenets.tasks.data.images import ImageRecord
from scenes.synthetic import SCENES, write_scenes


class ScenesDataModule(BaseDataModule):
    class_names = list(SCENES)

    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_scenes(root, seed=self.hparams.seed, **options)

    def read_splits(self) -> dict[str, list[ImageRecord]]:
        def records(split: str) -> list[ImageRecord]:
            return [ImageRecord(path, label, f"{split}/{scene}")
                    for label, scene in enumerate(SCENES) for path in sorted((self.root / split / scene).glob("*.png"))]

        train, val = self.split_off_validation(records("train"))
        return {"train": train, "val": val, "test": records("test")}
