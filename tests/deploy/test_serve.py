"""``mobilenets serve``: each task's JSON answer against the task's own PyTorch outputs, batching that changes no
answer, bad requests refused with a 4xx while the server goes on, and the page in a real headless Chromium."""

import asyncio
import base64
import io
import os
import shutil
import socket
import tempfile
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from mobilenets.backbone import BackboneConfig
from mobilenets.deploy import export_onnx, inference_model
from mobilenets.deploy.runtimes import runtime
from mobilenets.deploy.serve import ServeSettings, create_app, load_test
from mobilenets.tasks.face_attributes import FaceAttributes
from mobilenets.tasks.face_embedding import FaceEmbedding
from mobilenets.tasks.face_embedding.gallery import Gallery
from mobilenets.tasks.data.loading import load_task
from mobilenets.tasks.multitask import MultiTask


def _photo(data, index: int = 0) -> bytes:
    """A validation image of the task's data, as the JPEG bytes a client sends."""
    dataset = data.datasets["val"]
    if hasattr(dataset, "records"):
        path = dataset.records[index].path
    else:  # COCO's: image ids into its annotation file
        path = dataset.image_dir / dataset.coco.imgs[dataset.image_ids[index]]["file_name"]
    with open(path, "rb") as handle:
        return handle.read()


def _expected(task, photo: bytes) -> dict[str, np.ndarray]:
    """The task's PyTorch export on the photo resized to its input, as the server resizes it."""
    export = inference_model(task)
    image = TF.pil_to_tensor(Image.open(io.BytesIO(photo)).convert("RGB"))
    batch = TF.resize(image, [export.resolution] * 2, antialias=True)[None].float() / 255
    with torch.no_grad():
        return {name: value.numpy() for name, value in zip(export.output_names, export.run(batch))}, image.shape


def _post(client, photo: bytes, **kwargs):
    return client.post("/predict", files={"image": ("photo.jpg", photo, "image/jpeg")}, **kwargs)


@pytest.mark.parametrize("name", ["classification", "attributes", "embedding", "geolocation", "detection"])
def test_each_task_answers_its_own_outputs(validated, name):
    task, data, _, onnx_path = validated[name]
    photo = _photo(data)
    with TestClient(create_app(ServeSettings(str(onnx_path)))) as client:
        response = _post(client, photo)
        assert response.status_code == 200, response.text
        answer = response.json()
        info = client.get("/info").json()
    assert info["model"]["task"].endswith(type(task).__name__)
    assert info["model"]["resolution"] == task.hparams.resolution
    outputs, (_, height, width) = _expected(task, photo)
    close = dict(abs=1e-4)
    if name == "classification":
        assert [entry["label"] for entry in answer["top"]] == [task.class_names[i] for i in outputs["top_classes"][0]]
        assert [entry["score"] for entry in answer["top"]] == pytest.approx(outputs["top_probabilities"][0], **close)
    elif name == "attributes":
        assert [entry["name"] for entry in answer["attributes"]] == task.attribute_names
        assert [e["probability"] for e in answer["attributes"]] == pytest.approx(outputs["probabilities"][0], **close)
    elif name == "embedding":
        assert answer["embedding"] == pytest.approx(outputs["embeddings"][0], **close)
        assert answer["threshold"] == pytest.approx(float(task.verification_threshold))
    elif name == "geolocation":
        assert [answer["latitude"], answer["longitude"]] == pytest.approx(outputs["coordinates"][0], **close)
        assert [entry["score"] for entry in answer["top"]] == pytest.approx(outputs["top_probabilities"][0], **close)
    else:
        scale = np.array([width, height, width, height]) / task.hparams.resolution
        boxes = [entry["box"] for entry in answer["detections"]]
        assert len(boxes) == len(outputs["boxes"]) > 0
        assert np.allclose(boxes, outputs["boxes"] * scale, atol=0.1)  # rounded to 0.1 px
        assert {entry["label"] for entry in answer["detections"]} <= set(task.class_names)


def test_a_checkpoint_an_openvino_file_a_multitask_model_and_a_face_gallery_are_served(validated, checkpoints,
                                                                                        tmp_path):
    checkpoint = checkpoints / "dogs" / "model.ckpt"
    with TestClient(create_app(ServeSettings(str(checkpoint)), load_task(checkpoint))) as client:
        top = _post(client, _photo(validated["classification"][1])).json()["top"]
        assert len(top) == 3 and top[0]["score"] >= top[-1]["score"]

    task, data, _, onnx_path = validated["attributes"]
    xml = runtime("openvino").write(inference_model(task), tmp_path / "model.xml", onnx_path)
    answers = []
    for model in (onnx_path, xml):
        with TestClient(create_app(ServeSettings(str(model)))) as client:
            answers.append(_post(client, _photo(data)).json()["attributes"])
    assert [a["probability"] for a in answers[1]] == pytest.approx([a["probability"] for a in answers[0]], abs=1e-4)

    multitask = MultiTask(heads={"face_attributes": FaceAttributes(num_attributes=4),
                                 "face_embedding": FaceEmbedding(embedding_dim=8)},
                          resolution=48, backbone=BackboneConfig(alpha=0.25)).eval()
    export_onnx(multitask, tmp_path / "multitask.onnx")
    with TestClient(create_app(ServeSettings(str(tmp_path / "multitask.onnx")))) as client:
        heads = _post(client, _photo(validated["attributes"][1])).json()["heads"]
    assert len(heads["face_attributes"]["attributes"]) == 4 and len(heads["face_embedding"]["embedding"]) == 8

    task, data, _, onnx_path = validated["embedding"]
    photos = [_photo(data, index) for index in (0, 1)]
    embeddings = np.stack([_expected(task, photo)[0]["embeddings"][0] for photo in photos])
    Gallery.enrol(embeddings, ["ada", "bo"], ["a.jpg", "b.jpg"], per_image=True, checkpoint="x.ckpt",
                  checkpoint_sha256="0" * 64, threshold=0.5).save(tmp_path / "gallery.npz")
    settings = ServeSettings(str(onnx_path), options={"gallery": str(tmp_path / "gallery.npz"), "top_k": 2})
    with TestClient(create_app(settings)) as client:
        answer = _post(client, photos[1]).json()
    assert answer["identity"] == "bo" and answer["matches"][0]["identity"] == "bo"
    assert answer["matches"][0]["distance"] == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError, match="takes no serving option 'gallery'"):
        create_app(ServeSettings(str(validated["classification"][3]), options={"gallery": "g.npz"}))


def test_bad_requests_get_a_4xx_with_a_reason_and_the_server_goes_on(validated, monkeypatch):
    _, data, _, onnx_path = validated["classification"]
    photo = _photo(data)
    bomb = io.BytesIO()
    Image.new("1", (3000, 3000)).save(bomb, format="PNG")  # 9 million pixels in a few kilobytes
    settings = ServeSettings(str(onnx_path), max_body=200_000, max_pixels=4_000_000)

    def no_disk(*args, **kwargs):
        raise AssertionError("a request reached the file system")

    with TestClient(create_app(settings)) as client:
        for name in ("TemporaryFile", "SpooledTemporaryFile", "NamedTemporaryFile", "mkstemp"):
            monkeypatch.setattr(tempfile, name, no_disk)
        cases = [
            (_post(client, b"this is not an image"), 415, "not an image"),
            (_post(client, photo[: len(photo) // 2]), 400, "cannot be decoded"),
            (_post(client, bomb.getvalue()), 413, "over the server's limit of 4,000,000"),
            (_post(client, photo + b"\0" * 300_000), 413, "over the server's limit of 200,000 bytes"),
            (client.post("/predict", files={"photo": ("p.jpg", photo, "image/jpeg")}), 422, "no 'image' field"),
            (client.post("/predict", content=b"{not json", headers={"content-type": "application/json"}), 400,
             "not valid JSON"),
            (client.post("/predict", json={"image": "%%%"}), 400, "not valid base64"),
            (client.post("/predict", json={"picture": "abc"}), 422, '{"image"'),
            (client.post("/predict", content=photo, headers={"content-type": "image/jpeg"}), 415, "content type"),
        ]
        for response, status, reason in cases:
            assert response.status_code == status and reason in response.json()["error"], response.text
        assert client.post("/predict", json={"image": base64.b64encode(photo).decode()}).status_code == 200
        assert _post(client, photo).status_code == 200 and client.get("/health").json() == {"status": "ok"}


def test_batching_gathers_concurrent_requests_and_changes_no_answer(validated):
    task, data, _, onnx_path = validated["detection"]
    photos = [_photo(data, index) for index in range(4)]

    async def ask(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*[client.post("/predict", files={"image": ("p.jpg", photo)})
                                               for photo in photos])
        return [response.json() for response in responses]

    answers = {}
    for max_batch in (1, 8):
        app = create_app(ServeSettings(str(onnx_path), max_batch=max_batch, max_wait=0.5))
        answers[max_batch] = asyncio.run(ask(app))
        sizes = app.state.batcher.batch_sizes
        assert sizes == [1] * 4 if max_batch == 1 else max(sizes) > 1 and sum(sizes) == 4
    for alone, batched in zip(answers[1], answers[8]):
        assert [d["label"] for d in alone["detections"]] == [d["label"] for d in batched["detections"]]
        assert np.allclose([d["box"] for d in alone["detections"]], [d["box"] for d in batched["detections"]],
                           atol=0.2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def running_server(validated):
    """The detection model served by uvicorn on a free localhost port, in a thread; its URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ServeSettings(str(validated["detection"][3]))),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_bounded_load_test_reports_throughput_and_latency(running_server, validated):
    rows = load_test(running_server, _photo(validated["detection"][1]), clients=(1, 4), requests=8)
    assert [row["clients"] for row in rows] == [1, 4] and all(row["ok"] == 8 for row in rows)
    assert all(0 < row["p50_ms"] <= row["p99_ms"] and row["requests_per_s"] > 0 for row in rows)


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="Debian's chromium and chromium-driver are not installed")
def test_the_page_draws_the_answer_in_headless_chromium(running_server, validated, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(_photo(validated["detection"][1]))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1400"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(running_server + "/")
        WebDriverWait(driver, 30).until(lambda d: "px input" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(photo))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "answer").get_attribute("data-ready"))
        answer = driver.find_element(By.ID, "answer")
        assert answer.get_attribute("data-ready") == "answer" and "detections" in answer.text
        width = driver.execute_script("return document.getElementById('canvas').width")
        assert width == Image.open(photo).width  # the photo is drawn, the boxes over it
        artifacts = os.environ.get("MOBILENETS_TEST_ARTIFACTS", str(tmp_path))
        os.makedirs(artifacts, exist_ok=True)
        driver.save_screenshot(os.path.join(artifacts, "serve_page.png"))
    finally:
        driver.quit()
    with Image.open(os.path.join(artifacts, "serve_page.png")) as screenshot:
        assert screenshot.size[0] > 500


def test_the_command_serves_a_checkpoint_with_two_worker_processes(checkpoints, validated):
    """``mobilenets serve CKPT --workers 2`` as users start it: uvicorn's worker processes each load the task."""
    import subprocess
    import sys

    port = _free_port()
    checkpoint = checkpoints / "dogs" / "model.ckpt"
    server = subprocess.Popen([sys.executable, "-m", "mobilenets.cli", "serve", str(checkpoint), "--port", str(port),
                               "--workers", "2", "--threads", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        answers = [httpx.post(f"{url}/predict", files={"image": ("p.jpg", _photo(validated["classification"][1]))},
                              timeout=60).json() for _ in range(4)]
        info = httpx.get(f"{url}/info", timeout=10).json()
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert all(answer == answers[0] for answer in answers) and len(answers[0]["top"]) == 3
    assert info["model"]["task"].endswith("ClassificationTask") and len(info["model"]["class_names"]) == 3
    assert output.count("Started server process") == 2, output
