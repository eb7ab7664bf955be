"""``mobilenets serve``: a trained model behind an HTTP JSON API, with dynamic batching and a page to try it.

FastAPI and uvicorn serve it. ``POST /predict`` takes one photo (multipart field ``image``, or JSON
``{"image": "<base64>"}``) and answers with the task's JSON (its export's ``answerer``); ``GET /info`` gives the
model's task, labels and input size, ``GET /health`` says it is ready, ``GET /`` is the page. FastAPI has no
batching, so a small asyncio batcher here gathers the requests that arrive within ``max_wait`` seconds, up to
``max_batch``, into one forward pass. Requests are read in memory and never written to disk.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.parser
import email.policy
import importlib.metadata
import inspect
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from mobilenets.core.errors import SettingError
from mobilenets.core.imports import resolve_class
from mobilenets.core.tables import Table

__all__ = ["ServeSettings", "ServedModel", "bench_serve", "create_app", "load_test"]

PAGE = Path(__file__).with_name("page.html")


@dataclass
class ServeSettings:
    """What ``mobilenets serve`` serves and how.

    Attributes:
        model: a suite checkpoint (``.ckpt``; a distiller's gives its student), or an exported ``model.onnx`` /
            ``model.xml`` (OpenVINO).
        max_batch: the most requests one forward pass takes (1: no batching).
        max_wait: seconds the first request of a batch waits for others.
        max_body: the largest request body, in bytes.
        max_pixels: the largest image, in pixels (larger: refused as a decompression bomb).
        threads: CPU threads of the model's runtime.
        options: the task's serving options (face embedding: ``gallery``, ``top_k``).
    """

    model: str
    max_batch: int = 8
    max_wait: float = 0.005
    max_body: int = 10 * 2**20
    max_pixels: int = 40_000_000
    threads: int = 2
    options: dict[str, Any] = field(default_factory=dict)


class ServedModel:
    """A model file, its runner and its task's answerer: photos in, one JSON-ready answer per photo out.

    ``task``: for a checkpoint, the task it holds, loaded by the caller (a distiller's student, say).
    """

    def __init__(self, settings: ServeSettings, task: Any = None) -> None:
        path = Path(settings.model)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        torch.set_num_threads(settings.threads)
        if path.suffix == ".ckpt":
            from mobilenets.deploy.evaluate import TorchRunner
            from mobilenets.deploy.export import inference_model

            if task is None:
                raise ValueError(f"{path}: give the task the checkpoint holds (mobilenets serve loads it)")
            export = inference_model(task)
            self.run, self.metadata = TorchRunner(export), export.metadata()
        elif path.suffix == ".onnx":
            from mobilenets.deploy.evaluate import OnnxRunner
            from mobilenets.deploy.export import read_metadata

            self.run, self.metadata = OnnxRunner(path, settings.threads), read_metadata(path)
        elif path.suffix == ".xml":
            from mobilenets.deploy.runtimes import runtime

            openvino = runtime("openvino")
            self.metadata = openvino.read_metadata(path)
            self.run = openvino.runner(path, None, settings.threads)
        else:
            raise SettingError(f"{path}: serve takes a checkpoint (.ckpt), model.onnx or an OpenVINO model.xml")
        if "export" not in self.metadata:
            raise SettingError(f"{path} was exported by an older mobilenets that did not record how to read its "
                               f"outputs; export the checkpoint again (mobilenets export)")
        answerer = resolve_class(self.metadata["export"], None).answerer
        options = list(inspect.signature(answerer).parameters)[1:]  # after the metadata
        unknown = sorted(set(settings.options) - set(options))
        if unknown:
            raise SettingError(f"{self.metadata['task'].rpartition('.')[2]} takes no serving option "
                               f"{unknown[0]!r}; its options: {options or 'none'}")
        self.answer = answerer(self.metadata, **settings.options)
        self.resolution = int(self.metadata["resolution"])

    def predict(self, images: Sequence[torch.Tensor]) -> list[dict[str, Any]]:
        """Answers for uint8 RGB (3, H, W) photos, each resized to the model's input as the exported file takes it."""
        size = [self.resolution, self.resolution]
        batch = torch.stack([TF.resize(image, size, antialias=True) for image in images]).float() / 255
        outputs = dict(zip(self.metadata["outputs"], self.run(batch)))
        return self.answer({name: np.asarray(value) for name, value in outputs.items()},
                           [(image.shape[2], image.shape[1]) for image in images])


class BadRequest(Exception):
    """A request the server refuses: its HTTP status and the one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def read_photo(data: bytes, max_pixels: int) -> torch.Tensor:
    """A request's image bytes as uint8 RGB (3, H, W), upright by EXIF; ``BadRequest`` for anything else."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise BadRequest(413, f"image of {image.width} x {image.height} pixels is over the server's limit of "
                                      f"{max_pixels:,} (a decompression bomb?)")
            image.load()
            return TF.pil_to_tensor(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise BadRequest(415 if isinstance(error, UnidentifiedImageError) else 413,
                         "not an image PIL can read" if isinstance(error, UnidentifiedImageError) else str(error))
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for damaged and truncated files
        raise BadRequest(400, f"the image cannot be decoded: {error}") from None


def image_bytes(body: bytes, content_type: str) -> bytes:
    """The photo in a request body: multipart field ``image``, or JSON ``{"image": "<base64>"}``."""
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        if "image" not in parts:
            raise BadRequest(422, f"no 'image' field in the form (it has {sorted(filter(None, parts))}); send the "
                                  f"photo as the multipart field 'image'")
        return parts["image"].get_payload(decode=True) or b""
    if content_type.startswith("application/json"):
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest(400, "the body is not valid JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
            raise BadRequest(422, 'JSON requests need {"image": "<the photo, base64-encoded>"}')
        try:
            return base64.b64decode(payload["image"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(400, "'image' is not valid base64") from None
    raise BadRequest(415, f"content type {content_type or 'missing'}: send multipart/form-data (field 'image') or "
                          f"application/json")


class Batcher:
    """Gathers the requests that arrive within ``max_wait`` seconds, up to ``max_batch``, into one call of
    ``ServedModel.predict`` (in a worker thread, so the server keeps accepting requests)."""

    def __init__(self, model: ServedModel, max_batch: int, max_wait: float) -> None:
        self.model, self.max_batch, self.max_wait = model, max_batch, max_wait
        self.batch_sizes: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def answer(self, image: torch.Tensor) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the first request in this event loop starts the batching task in it
            self._loop, self.queue = loop, asyncio.Queue()
            self._task = loop.create_task(self.run())
        future = loop.create_future()
        await self.queue.put((image, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            self.batch_sizes.append(len(items))
            try:
                answers = await asyncio.to_thread(self.model.predict, [image for image, _ in items])
            except Exception as error:  # the model's own failure: every waiting request gets it (a 500)
                for _, future in items:
                    future.set_exception(error)
                continue
            for (_, future), answer in zip(items, answers):
                future.set_result(answer)


def create_app(settings: ServeSettings, task: Any = None) -> Any:
    """The FastAPI application serving ``settings.model`` (``task``: a checkpoint's, see ``ServedModel``)."""
    model = ServedModel(settings, task)
    batcher = Batcher(model, settings.max_batch, settings.max_wait)
    app = FastAPI(title="mobilenets serve", docs_url=None, redoc_url=None)
    app.state.batcher = batcher
    info = {"model": {key: value for key, value in model.metadata.items() if key != "export"},
            "serving": {**asdict(settings), "model": Path(settings.model).name},
            "version": importlib.metadata.version("mobilenet-suite")}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    async def model_info() -> dict[str, Any]:
        return info

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        try:
            length = request.headers.get("content-length")
            if length is None:
                raise BadRequest(411, "send the request with a Content-Length header")
            if not length.isdigit() or int(length) > settings.max_body:
                raise BadRequest(413, f"the body is over the server's limit of {settings.max_body:,} bytes")
            data = image_bytes(await request.body(), request.headers.get("content-type", ""))
            image = await asyncio.to_thread(read_photo, data, settings.max_pixels)
        except BadRequest as refused:
            return JSONResponse({"error": refused.reason}, status_code=refused.status)
        return await batcher.answer(image)

    return app


def load_test(url: str, photo: bytes, clients: Sequence[int] = (1, 8, 32), requests: int = 64,
              timeout: float = 120.0) -> list[dict[str, Any]]:
    """A bounded load test of a running server: for each number of concurrent ``clients``, ``requests`` posts of
    ``photo`` (each client sends its share in turn, none after ``timeout`` seconds); throughput and latency."""
    import httpx

    async def client_loop(client: httpx.AsyncClient, count: int, latencies: list[float], ok: list[int],
                          deadline: float) -> None:
        for _ in range(count):
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            response = await client.post(f"{url}/predict", files={"image": ("photo.jpg", photo, "image/jpeg")})
            latencies.append(time.perf_counter() - start)
            ok.append(response.status_code == 200)

    async def one_level(concurrent: int) -> dict[str, Any]:
        latencies: list[float] = []
        ok: list[int] = []
        shares = [requests // concurrent + (index < requests % concurrent) for index in range(concurrent)]
        limits = httpx.Limits(max_connections=concurrent)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            start = time.perf_counter()
            await asyncio.gather(*[client_loop(client, share, latencies, ok, start + timeout) for share in shares])
            elapsed = time.perf_counter() - start
        return {"clients": concurrent, "requests": len(latencies), "ok": sum(ok),
                "requests_per_s": len(latencies) / elapsed, "p50_ms": 1000 * float(np.percentile(latencies, 50)),
                "p99_ms": 1000 * float(np.percentile(latencies, 99))}

    return [asyncio.run(one_level(concurrent)) for concurrent in clients]


def bench_serve(requests: int = 64, clients: Sequence[int] = (1, 8, 32), threads: int = 2) -> Table:
    """``load_test`` of ``mobilenets serve`` on localhost, a server process per model and batching setting: the
    0.25 and 1.0 MobileNet-224 classifiers (1000 classes) and SSD300 on 1.0 MobileNet, random weights, served
    from their ONNX exports; a 640 x 480 JPEG photo."""
    import socket
    import subprocess
    import sys
    import tempfile
    import urllib.request

    from mobilenets.deploy.export import export_onnx
    from mobilenets.tasks.data.loading import build_from_config

    torch.manual_seed(0)
    models = {"0.25 MobileNet-224": build_from_config("paper/imagenet.yaml", "model", num_classes=1000,
                                                      backbone={"alpha": 0.25}, resolution=224),
              "1.0 MobileNet-224": build_from_config("paper/imagenet.yaml", "model", num_classes=1000,
                                                     backbone={"alpha": 1.0}, resolution=224),
              "SSD300, 1.0 MobileNet": build_from_config("paper/coco_ssd300.yaml", "model", num_classes=90)}
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(photo, "JPEG")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, task in models.items():
            path = export_onnx(task.eval(), Path(folder) / f"{len(rows)}.onnx")
            for max_batch in (8, 1):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", 0))
                    port = probe.getsockname()[1]
                server = subprocess.Popen([sys.executable, "-m", "mobilenets.cli", "serve", str(path), "--port",
                                           str(port), "--max-batch", str(max_batch), "--threads", str(threads)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    url = f"http://127.0.0.1:{port}"
                    for _ in range(600):
                        try:
                            urllib.request.urlopen(f"{url}/health", timeout=1)
                            break
                        except OSError:
                            time.sleep(0.1)
                    for row in load_test(url, photo.getvalue(), clients, requests):
                        rows.append([name, "on (8)" if max_batch > 1 else "off", row["clients"], row["ok"],
                                     f"{row['requests_per_s']:.1f}", f"{row['p50_ms']:.0f}", f"{row['p99_ms']:.0f}"])
                finally:
                    server.terminate()
                    server.wait(30)
    return Table(key="bench_serve",
                 title=f"mobilenets serve on localhost, ONNX Runtime ({threads} threads), {requests} requests a row",
                 columns=["model", "batching", "clients", "answered", "requests/s", "p50 ms", "p99 ms"], rows=rows)
