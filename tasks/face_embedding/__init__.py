"""Face embeddings (the paper's Table 14): FaceNet triplet training on identity folders, LFW verification."""

from mobilenets.tasks.face_embedding.data import FaceIdentityDataModule
from mobilenets.tasks.face_embedding.model import EmbeddingNet, table14
from mobilenets.tasks.face_embedding.synthetic import write_faces
from mobilenets.tasks.face_embedding.task import FaceEmbeddingTask

__all__ = ["EmbeddingNet", "FaceEmbeddingTask", "FaceIdentityDataModule", "table14", "write_faces"]
