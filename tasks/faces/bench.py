"""MTCNN face detection against the ``mtcnn`` package (``mobilenets bench faces``). A benchmark only: nothing here
is asserted in tests."""

from __future__ import annotations

import os
from functools import partial

import torch

from mobilenets.core.tables import Table
from mobilenets.core.timing import interleaved_medians
# Before TensorFlow: torchvision imported after it (torch._dynamo's triton probe) crashes the process.
from mobilenets.tasks.faces.detection import FaceDetector

__all__ = ["bench_faces"]


def bench_faces(rounds: int = 10, threads: int = 2) -> Table:
    """MTCNN face detection per photo: ours (PyTorch) against the ``mtcnn`` package's TensorFlow implementation of
    the same weights, on scikit-image's astronaut photo and on a 1024 x 768 scene with three faces of it pasted at
    different sizes; median milliseconds, interleaved rounds, and how far apart the two put the boxes."""
    import numpy as np
    from PIL import Image

    os.environ["KERAS_BACKEND"] = "tensorflow"  # the mtcnn package runs on TensorFlow's Keras
    try:
        import tensorflow as tf
        from mtcnn import MTCNN
        from skimage.data import astronaut
    except ImportError:
        raise SystemExit("the face benchmark compares against the mtcnn package on TensorFlow: "
                         "pip install 'mobilenet-suite[dev]'") from None
    torch.set_num_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    portrait = Image.fromarray(astronaut())
    scene = Image.new("RGB", (1024, 768), (110, 120, 130))
    for (x, y), side in zip([(40, 80), (420, 200), (800, 500)], (320, 200, 120)):
        scene.paste(portrait.resize((side, side)), (x, y))
    ours, theirs = FaceDetector(), MTCNN()
    rows = []
    for name, picture in (("astronaut, 512 x 512, 1 face", portrait), ("scene, 1024 x 768, 3 faces", scene)):
        array = np.array(picture)
        tensor = torch.from_numpy(array).permute(2, 0, 1)
        def detect_theirs(array=array):
            return theirs.detect_faces(array, box_format="xyxy", threshold_onet=0.7)

        seconds = interleaved_medians({"ours": partial(ours.detect, tensor), "theirs": detect_theirs}, rounds)
        ours_ms, theirs_ms = seconds["ours"] * 1000, seconds["theirs"] * 1000
        our_faces, their_faces = ours.detect(tensor), detect_theirs()
        gap = max((min(np.abs(np.array(face.box) - other["box"]).max() for other in their_faces)
                   for face in our_faces), default=float("nan"))
        rows.append([name, f"{ours_ms:.1f}", f"{theirs_ms:.1f}", f"{theirs_ms / ours_ms:.2f}x",
                     f"{len(our_faces)} / {len(their_faces)}", f"{gap:.1f}"])
    return Table(
        key="bench_faces",
        title=f"MTCNN face detection per photo, {threads} threads, median of {rounds} interleaved rounds",
        columns=["photo", "ours (ms)", "mtcnn package, TF (ms)", "speed-up", "faces (ours / theirs)",
                 "largest box gap (px)"],
        rows=rows,
    )
