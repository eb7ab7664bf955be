"""Classification: fine-grained (the paper's Stanford Dogs, Table 10), any ImageFolder dataset, and ImageNet
(ILSVRC-2012 in its distributed layouts) for training the backbone family."""

from mobilenets.core.lazy import lazy_exports

__all__ = [
    "Classification",
    "ClassificationTask",
    "DogsDataModule",
    "ImageNetDataModule",
    "MobileNetClassifier",
    "table10",
    "write_imagenet",
    "write_stanford_dogs",
]
__getattr__ = lazy_exports(__name__, {
    "DogsDataModule": "data", "ImageNetDataModule": "imagenet",
    "MobileNetClassifier": "model", "table10": "model",
    "write_imagenet": "synthetic", "write_stanford_dogs": "synthetic",
    "Classification": "task", "ClassificationTask": "task",
})
