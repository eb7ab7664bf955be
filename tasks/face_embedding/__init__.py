"""Face embeddings (the paper's Table 14): FaceNet triplet training on identity folders, LFW verification."""

from mobilenets.core.lazy import lazy_exports

__all__ = [
    "EmbeddingNet",
    "FaceEmbedding",
    "FaceEmbeddingTask",
    "FaceIdentityDataModule",
    "table14",
    "write_faces",
]
__getattr__ = lazy_exports(__name__, {
    "FaceIdentityDataModule": "data",
    "EmbeddingNet": "model", "table14": "model",
    "write_faces": "synthetic",
    "FaceEmbedding": "task", "FaceEmbeddingTask": "task",
})
