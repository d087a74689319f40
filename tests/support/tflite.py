"""Running a TFLite file as a device would: TensorFlow's own interpreter, one image per call at batch 1.

The export measures its files itself; the tests judge them with this instead, a path of its own
(batch 1 as written, no resized input), so an export whose own comparison is wrong cannot pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tflite_logits(path: Path, images: np.ndarray) -> np.ndarray:
    """The outputs of the TFLite file at `path` for each of `images`, invoked one image at a time."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert tuple(source["shape"][1:]) == images.shape[1:], f"{path.name} takes {source['shape']}, not {images.shape}"
    rows = []
    for image in images:
        interpreter.set_tensor(source["index"], image[None].astype(source["dtype"]))
        interpreter.invoke()
        rows.append(np.array(interpreter.get_tensor(target["index"])[0], np.float64))
    return np.stack(rows)
