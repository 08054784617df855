"""The Python API (`import softmax_cli as sc`): what it returns is what the CLI prints for the same run,
checkpoint and picture, on the synthetic data. That importing the package imports no torch is
tests/test_startup.py's business."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import softmax_cli as sc
from tests import helpers
from tests.helpers import assert_clean, invoke, only_json
from tests.test_predict_image import synthetic_test_images, user_style

CPU = ("--device", "cpu")
# How long an epoch took differs from run to run; every other number of a seeded run is the same.
TIMINGS = ("seconds", "examples_per_s")


def without_timings(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in entry.items() if key not in TIMINGS} for entry in history]


@pytest.fixture(scope="module")
def trained(synthetic_data_dir, tmp_path_factory):
    """A 2-epoch run made through the API."""
    folder = tmp_path_factory.mktemp("api-train")
    return sc.train(
        epochs=2, batch_size=64, data_dir=synthetic_data_dir, runs_dir=folder / "runs", device="cpu", name="api"
    )


def test_train_gives_the_history_train_json_gives_for_the_same_settings(trained, synthetic_data_dir, tmp_path):
    payload = helpers.train_json(synthetic_data_dir, tmp_path, "--epochs", "2", "--batch-size", "64", "--name", "api")
    assert len(trained.history) == 2 and not trained.interrupted
    assert without_timings(trained.history) == without_timings(payload["history"])
    assert trained.hparams == payload["hparams"]
    assert trained.checkpoint == trained.run_dir / "checkpoint.pt" and trained.checkpoint.is_file()
    assert trained.run_dir.name == "api" and trained.run_dir.parent.name == "scratch"
    assert trained.test_acc == trained.history[-1]["test_acc"]
    assert trained.train_loss == trained.history[-1]["train_loss"]
    assert set(trained.as_dict()) == set(payload)


def test_the_api_run_is_a_run_the_cli_lists(trained):
    result = invoke("runs", "--runs-dir", trained.run_dir.parents[1], "--json")
    assert_clean(result)
    assert str(trained.checkpoint) in result.stdout


@pytest.mark.parametrize("given", ["run folder", "checkpoint"])
def test_evaluate_returns_the_dict_eval_json_prints(trained, synthetic_data_dir, given):
    path = trained.run_dir if given == "run folder" else trained.checkpoint
    model = sc.load(path, device="cpu")
    assert model.checkpoint == trained.checkpoint
    result = invoke("eval", path, *CPU, "--data-dir", synthetic_data_dir, "--json")
    assert_clean(result)
    assert result.exit_code == 0, result.output
    assert model.evaluate(data_dir=synthetic_data_dir) == only_json(result)


def test_predict_agrees_with_predict_image_for_a_path_a_pil_image_an_array_and_a_tensor(trained, tmp_path):
    image = synthetic_test_images()[7]
    picture = user_style(image, np.random.default_rng(3))
    png = tmp_path / "picture.png"
    picture.save(png)
    result = invoke("predict", trained.checkpoint, *CPU, "--image", png, "--json")
    assert_clean(result)
    (expected,) = only_json(result)["predictions"]
    assert expected["image"] == str(png)

    model = sc.load(trained.checkpoint, device="cpu")
    assert model.predict(png) == [expected]
    assert model.predict([str(png)]) == [expected]
    as_index = {**expected, "image": 0}
    assert model.predict(Image.open(png)) == [as_index]
    assert model.predict(np.asarray(Image.open(png))) == [as_index]  # H x W x 3, uint8
    assert model.predict(np.asarray(Image.open(png).convert("L")) / 255.0) == [as_index]  # H x W, float 0..1
    # A tensor is taken as Fashion-MNIST-like already: the 28 x 28 image predict --image makes of the picture.
    from softmax_cli.data.photos import load_picture

    seen = torch.from_numpy(np.array(load_picture(png).seen))
    assert model.predict(seen.unsqueeze(0)) == [as_index]  # uint8
    assert model.predict(seen.unsqueeze(0).float() / 255) == [as_index]  # float in [0, 1]


def test_predict_labels_many_pictures_by_position_and_predict_proba_rows_sum_to_one(trained):
    images = torch.from_numpy(synthetic_test_images()[:5].copy())
    model = sc.load(trained.run_dir, device="cpu")
    rows = model.predict(images)
    assert [row["image"] for row in rows] == [0, 1, 2, 3, 4]
    probabilities = model.predict_proba(images)
    assert probabilities.shape == (5, 10)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    for row, p in zip(rows, probabilities, strict=True):
        assert row["predicted"] == model.class_names[int(p.argmax())]
        assert row["confidence"] == pytest.approx(float(p.max()))


def test_export_writes_an_onnx_file_that_onnxruntime_runs_with_the_same_argmax(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    model = sc.load(trained.checkpoint, device="cpu")
    out = model.export(tmp_path / "model.onnx")
    assert out == tmp_path / "model.onnx" and out.is_file()
    images = synthetic_test_images()[:20].astype(np.float32) / 255
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": images[:, None]})
    assert (logits.argmax(1) == model.predict_proba(torch.from_numpy(images)).argmax(1)).all()
    with pytest.raises(sc.UsageError, match="exists; pass overwrite=True"):
        model.export(out)


@pytest.mark.parametrize(
    ("options", "message", "option"),
    [
        ({"lr": -1}, "lr: must be > 0, not -1.0", "--lr"),
        ({"epochs": 0}, "epochs: must be >= 1, not 0", "--epochs"),
        ({"impl": "scrach"}, "impl: 'scrach' is not one of scratch, concise", "--impl"),
        ({"momentum": 1}, "momentum: must be in [0, 1), not 1.0", "--momentum"),
        ({"impl": "concise", "naive_softmax": True}, "naive_softmax: is for impl='scratch' only", "--naive-softmax"),
    ],
)
def test_a_bad_option_value_raises_usage_error_with_the_clis_words(options, message, option, tmp_path):
    with pytest.raises(sc.UsageError) as raised:
        sc.train(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", device="cpu", **options)
    assert str(raised.value) == message and raised.value.option == option
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_the_cli_says_the_same_of_a_bad_value(tmp_path):
    result = invoke("train", "--lr", "-1", "--data-dir", tmp_path / "data")
    assert result.exit_code == 2 and "must be > 0, not -1.0" in result.output


def test_load_of_a_missing_file_raises_the_checkpoint_error(tmp_path):
    with pytest.raises(sc.CheckpointError):
        sc.load(tmp_path / "nothing.pt")
