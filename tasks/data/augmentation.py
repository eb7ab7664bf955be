"""The ``augmentation:`` block every image data module takes: the training augmentation and the evaluation crop,
from the config. The defaults are the paper's light augmentation (random resized crop and flip); what a dataset
must not have (flips for digits, text or logos) or a longer run wants (an automatic policy, random erasing) is set
in YAML::

    data:
      init_args:
        augmentation:
          hflip: false
          crop_scale: [0.35, 1.0]
          policy: trivialaugment
          random_erasing: 0.25
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torchvision.transforms import v2

from mobilenets.core.checkpoint import checkpoint_type

__all__ = ["Augmentation", "Policy"]

Policy = Literal["trivialaugment", "randaugment", "autoaugment"]


def _policy(name: Policy) -> v2.Transform:
    if name == "trivialaugment":
        return v2.TrivialAugmentWide()
    if name == "randaugment":
        return v2.RandAugment()
    return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)


@checkpoint_type
@dataclass(frozen=True)
class Augmentation:
    """How training images are augmented and evaluation images cropped.

    Args:
        hflip: flip training images left-right half the time; false where a flip changes the meaning (digits,
            text, logos, road signs).
        crop_scale: the random resized crop's range of area shares; None: the data module's default (dogs
            (0.25, 1), faces (0.6 or 0.7, 1), geolocation (0.5, 1), ImageNet (0.08, 1)).
        crop_ratio: the crop's range of aspect ratios (torchvision's 3/4 to 4/3).
        eval_crop_fraction: evaluation resizes the short side to resolution / this and keeps the central square;
            None: the data module's default (0.875 for classification, 1.0 for faces and geolocation).
        policy: an automatic augmentation policy after the crop: ``trivialaugment`` (TrivialAugmentWide),
            ``randaugment`` or ``autoaugment`` (its ImageNet policy), from torchvision; None: none.
        random_erasing: the probability of torchvision's RandomErasing on each training image (0: off).
    """

    hflip: bool = True
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    eval_crop_fraction: float | None = None
    policy: Policy | None = None
    random_erasing: float = 0.0

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio"):  # YAML gives lists; as tuples, equal configs compare equal
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.crop_scale is not None and not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"augmentation.crop_scale must be two area shares 0 < low <= high <= 1, got "
                             f"{list(self.crop_scale)}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"augmentation.crop_ratio must be two aspect ratios 0 < low <= high, got "
                             f"{list(self.crop_ratio)}")
        if self.eval_crop_fraction is not None and not 0 < self.eval_crop_fraction <= 1:
            raise ValueError(f"augmentation.eval_crop_fraction must be in (0, 1], got {self.eval_crop_fraction}")
        if self.policy not in (None, "trivialaugment", "randaugment", "autoaugment"):
            raise ValueError(f"augmentation.policy must be trivialaugment, randaugment, autoaugment or null, got "
                             f"{self.policy!r}")
        if not 0 <= self.random_erasing <= 1:
            raise ValueError(f"augmentation.random_erasing is a probability in [0, 1], got {self.random_erasing}")

    @classmethod
    def of(cls, value: Augmentation | dict) -> Augmentation:
        """An ``Augmentation`` from itself or its fields as a mapping (how jsonargparse passes a dataclass to a
        data module whose ``resolution`` the CLI links from the model's)."""
        return value if isinstance(value, cls) else cls(**value)

    def train_transform(self, resolution: int, default_min_scale: float) -> v2.Transform:
        """uint8 image -> augmented float image in [0, 1]: crop, flip, policy, erasing."""
        scale = self.crop_scale or (default_min_scale, 1.0)
        return v2.Compose([
            v2.RandomResizedCrop(resolution, scale=tuple(scale), ratio=tuple(self.crop_ratio), antialias=True),
            *([v2.RandomHorizontalFlip()] if self.hflip else []),
            *([_policy(self.policy)] if self.policy else []),
            v2.ToDtype(torch.float32, scale=True),
            *([v2.RandomErasing(p=self.random_erasing)] if self.random_erasing else []),
        ])

    def crop_fraction(self, default: float) -> float:
        return self.eval_crop_fraction if self.eval_crop_fraction is not None else default

    def eval_transform(self, resolution: int, default_crop_fraction: float) -> v2.Transform:
        """Resize the short side to resolution / crop fraction, then the central resolution x resolution."""
        return v2.Compose([
            v2.Resize(round(resolution / self.crop_fraction(default_crop_fraction)), antialias=True),
            v2.CenterCrop(resolution),
            v2.ToDtype(torch.float32, scale=True),
        ])
