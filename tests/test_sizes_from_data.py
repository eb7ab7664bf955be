"""The paper configs name no class, attribute or cell count: run on synthetic datasets of other sizes than the
paper's, with no size given, each builds its model from the data, records the size in its checkpoint (which then
loads alone), and a size given explicitly is still checked against the data."""

from pathlib import Path

import pytest
import torch

from mobilenets.backbone import BackboneConfig
from mobilenets.cli import main
from mobilenets.tasks.classification import ClassificationTask
from mobilenets.tasks.data.loading import load_task

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--model.init_args.backbone.alpha", "0.25", "--data.init_args.num_workers", "0", "--trainer.precision",
         "32", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar",
         "false", "--trainer.default_root_dir", "run"]

#: per paper config: the synthetic data's options, other settings for a quick run, the size argument and the size
#: the data implies (the paper's is in the comment)
CASES = {
    "dogs": ("{num_classes: 5, train_per_class: 4, test_per_class: 1}",  # paper: 120
             ["--model.init_args.resolution", "64", "--data.init_args.batch_size", "4"], "num_classes", 5),
    "imagenet": ("{num_classes: 3, train_per_class: 4, val_per_class: 1}",  # paper: 1000
                 ["--model.init_args.resolution", "64", "--data.init_args.batch_size", "4"], "num_classes", 3),
    "face_attributes": ("{num_images: 24}",  # paper: CelebA's 40; the synthetic set has 10
                        ["--model.init_args.resolution", "64", "--data.init_args.batch_size", "4"],
                        "num_attributes", 10),
    "planet": ("{num_images: 120, num_regions: 4}",  # paper: 26,263 cells of MP-16
               ["--model.init_args.resolution", "64", "--data.init_args.batch_size", "8", "--data.init_args.t1",
                "30", "--data.init_args.t2", "3", "--data.init_args.max_level", "8"], "num_cells", None),
    "coco_ssd300": ("{train_images: 4, val_images: 2, image_size: 96}",  # paper: COCO's 80
                    ["--model.init_args.resolution", "96", "--model.init_args.extra_depths", "[32, 16, 16, 8]",
                     "--data.init_args.batch_size", "2", "--trainer.val_check_interval", "1"], "num_classes", 4),
}


@pytest.mark.parametrize("name", list(CASES))
def test_paper_configs_take_their_size_from_the_data(name, tmp_path, monkeypatch):
    options, settings, argument, expected = CASES[name]
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", f"paper/{name}.yaml", "--data.init_args.root", "data", "--data.init_args.synthetic",
          "true", "--data.init_args.synthetic_options", options, *SMALL, *settings])
    (checkpoint,) = Path("run").rglob("last.ckpt") or Path("run").rglob("*.ckpt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if expected is None:  # the partition's cell count, as the data module reports it
        from mobilenets.tasks.geolocation import GeoDataModule

        data = GeoDataModule("data", t1=30, t2=3, max_level=8)
        data.setup("fit")
        expected = data.num_cells[-1]
    assert saved["hyper_parameters"][argument] == expected
    task = load_task(checkpoint)  # the size travels in the checkpoint: no data needed to rebuild the model
    assert task.hparams[argument] == expected and task.model is not None


def test_a_size_given_is_checked_and_one_left_out_needs_a_trainer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="the data has 5 classes .* set model.init_args.num_classes: 5"):
        main(["fit", "--config", "paper/dogs.yaml", "--data.init_args.root", "data", "--data.init_args.synthetic",
              "true", "--data.init_args.synthetic_options", CASES["dogs"][0], "--model.init_args.num_classes", "7",
              *SMALL, *CASES["dogs"][1]])
    task = ClassificationTask(backbone=BackboneConfig(alpha=0.25))
    with pytest.raises(AttributeError, match="has no model yet: num_classes is left to the data, which a Trainer "
                                             "reads at setup; pass num_classes to build it now"):
        task(torch.zeros(1, 3, 32, 32))
    task.build(num_classes=4)
    assert task.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 4) and task.hparams.num_classes == 4
