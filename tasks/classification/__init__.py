"""Fine-grained classification (the paper's Stanford Dogs, Table 10), and any ImageFolder dataset."""

from mobilenets.core.lazy import lazy_exports

__all__ = [
    "ClassificationTask",
    "DogsDataModule",
    "MobileNetClassifier",
    "table10",
    "write_stanford_dogs",
]
__getattr__ = lazy_exports(__name__, {
    "DogsDataModule": "data",
    "MobileNetClassifier": "model", "table10": "model",
    "write_stanford_dogs": "synthetic",
    "ClassificationTask": "task",
})
