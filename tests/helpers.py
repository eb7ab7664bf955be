"""Helpers the tests share."""

import csv
import os
from pathlib import Path


def logged_metrics(root: Path) -> list[dict]:
    """Every row of every ``metrics.csv`` Lightning's CSV logger wrote under ``root``."""
    return [row for path in sorted(Path(root).rglob("metrics.csv")) for row in csv.DictReader(path.open())]


#: A fresh launch: no rendezvous left in the environment by an earlier in-process DDP test (its port may be taken).
LAUNCH_ENV = {key: value for key, value in os.environ.items()
              if key not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK",
                             "GROUP_RANK", "LOCAL_WORLD_SIZE", "PL_GLOBAL_SEED")} | {"OMP_NUM_THREADS": "1"}


#: a quick run of a packaged demo config: one step on a few synthetic images, alpha 0.25
QUICK = ["--model.init_args.backbone.alpha", "0.25", "--model.init_args.resolution", "48",
         "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4", "--trainer.max_steps", "1",
         "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1", "--trainer.limit_predict_batches",
         "1", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
DOGS = ["--config", "demo/dogs.yaml", "--data.init_args.root", "dogs", "--data.init_args.synthetic_options",
        "{num_classes: 3, train_per_class: 4, test_per_class: 2}"]
FACES = ["--config", "demo/face_attributes.yaml", "--data.init_args.root", "celeba",
         "--data.init_args.synthetic_options", "{num_images: 24}"]
