"""Fine-grained classification (the paper's Stanford Dogs, Table 10), and any ImageFolder dataset."""

from mobilenets.tasks.classification.data import DogsDataModule
from mobilenets.tasks.classification.model import MobileNetClassifier, table10
from mobilenets.tasks.classification.synthetic import write_stanford_dogs
from mobilenets.tasks.classification.task import ClassificationTask

__all__ = [
    "ClassificationTask",
    "DogsDataModule",
    "MobileNetClassifier",
    "table10",
    "write_stanford_dogs",
]
