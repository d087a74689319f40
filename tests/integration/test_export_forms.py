"""Every exported form of a masked model (compacted Keras, TFLite float32 and sparse) gives its predictions."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from lth.export import measured_report
from lth.export.forms import TFLITE_FORMS, TestSet, export_forms
from tests.support.tflite import tflite_logits


def _masked_model() -> keras.Model:
    """A small MobileNet-like network with a dead conv channel, a dead depthwise filter and a 90%-sparse 1x1 conv."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3), dtype="uint8", name="image")
    hidden = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(inputs)
    hidden = keras.layers.ReLU(6.0, name="stem_relu")(keras.layers.BatchNormalization(name="stem_bn")(
        keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(hidden)))
    hidden = keras.layers.ReLU(6.0, name="dw_relu")(keras.layers.BatchNormalization(name="dw_bn")(
        keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(hidden)))
    hidden = keras.layers.ReLU(6.0, name="wide_relu")(keras.layers.BatchNormalization(name="wide_bn")(
        keras.layers.Conv2D(64, 1, use_bias=False, name="wide")(hidden)))
    outputs = keras.layers.Dense(5, name="predictions")(keras.layers.GlobalAveragePooling2D(name="pool")(hidden))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, size), rng.normal(0.3, 0.5, size), rng.normal(0, 0.2, size),
                               rng.uniform(0.5, 2.0, size)])
    stem = np.array(model.get_layer("stem").kernel.numpy())
    stem[..., [0, 5]] = 0.0  # their constants reach the depthwise filters through zero padding: kept
    model.get_layer("stem").kernel.assign(stem)
    dw = np.array(model.get_layer("dw").kernel.numpy())
    dw[:, :, [2, 6], :] = 0.0  # dead filters: their channels go, from the stem too
    model.get_layer("dw").kernel.assign(dw)
    wide = np.array(model.get_layer("wide").kernel.numpy())
    wide[rng.random(wide.shape) < 0.9] = 0.0
    wide[0, 0, 1, :] = 0.5  # every channel reads a live input...
    wide[..., :16] = 0.0  # ...but 16 dead ones  # 16 dead channels: folded into the classifier's bias
    model.get_layer("wide").kernel.assign(wide)
    return model


Exported = tuple[Path, object, keras.Model, TestSet]  # the folder, the Export, the masked model, its test set


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    folder = tmp_path_factory.mktemp("export")
    model = _masked_model()
    rng = np.random.default_rng(2)
    test = TestSet(rng.integers(0, 256, (64, 12, 12, 3)).astype("uint8"), rng.integers(0, 5, 64))
    return folder, export_forms(model, folder, test, runs=20, threads=2, progress=lambda line: None), model, test


def test_every_form_predicts_what_the_masked_model_predicts(exported: Exported) -> None:
    folder, export, model, test = exported
    names = [form.name for form in export.forms]
    assert names == ["masked", "compact.keras", *TFLITE_FORMS]
    # Each written file run here, by its own runtime, against the masked model: the export's own comparison is
    # not the judge (with its reference dropped it reported 0 and 0 for any file).
    reference = np.asarray(model.predict(test.images, verbose=0), np.float64)
    compact = keras.saving.load_model(folder / "compact.keras")
    outputs = {"masked": reference, "compact.keras": np.asarray(compact.predict(test.images, verbose=0), np.float64)}
    outputs.update({name: tflite_logits(folder / name, test.images) for name in TFLITE_FORMS})
    accuracy = float(np.mean(reference.argmax(axis=1) == test.labels))
    for form in export.forms:
        logits = outputs[form.name]
        assert np.array_equal(logits.argmax(axis=1), reference.argmax(axis=1)), form.name
        assert float(np.abs(logits - reference).max()) < 1e-4, form.name
        assert form.test_accuracy == accuracy and form.disagreements == 0, form.name
        assert form.max_logit_diff < 1e-4, form.name
        if form.name != "masked":
            assert (folder / form.name).stat().st_size == form.size_bytes
    assert {name: form.sparse_tensors > 0 for name, form in zip(names, export.forms) if name in TFLITE_FORMS} == {
        "dense.tflite": False, "sparse.tflite": True, "compact.tflite": False, "compact_sparse.tflite": True}


def test_compaction_removed_the_dead_channels_and_the_files_shrank(exported: Exported) -> None:
    folder, export, _, _ = exported
    forms = {form.name: form for form in export.forms}
    compact = keras.saving.load_model(folder / "compact.keras")
    assert compact.get_layer("stem").filters == 6  # the two dead filters' channels; the dead stem channels stay
    assert compact.get_layer("wide").filters == 48
    assert export.removed_channels == 2 + 16
    assert forms["compact.keras"].cost.macs < forms["masked"].cost.macs
    assert forms["compact.tflite"].size_bytes < forms["dense.tflite"].size_bytes
    assert forms["sparse.tflite"].size_bytes < forms["dense.tflite"].size_bytes
    assert forms["dense.tflite"].speedup == pytest.approx(1.0)
    assert all(forms[name].latency_ms > 0 and forms[name].speedup > 0 for name in TFLITE_FORMS)


def test_the_report_round_trips_and_names_every_file(exported: Exported) -> None:
    folder, export, _, _ = exported
    json_path, markdown_path = measured_report.write(export, folder, "a test export")
    assert measured_report.read(json_path) == export
    text = markdown_path.read_text()
    assert all(f"| {name} |" in text for name in TFLITE_FORMS)
    assert "Every form predicts the same class on every test image." in text
