"""When a dense parent learned nothing: the one rule that the job line, the tickets' verdict and the report share.

Dependency-free, so the submitting process (lth.sweep.results) and the report, which never build
networks, judge a parent exactly as the job that trained it.
"""

from __future__ import annotations

# A parent is at chance when its test accuracy is at most this many times chance (1/classes): 0.15 of 10
# classes. Test accuracy, not the training loss, because it is what every dense run logs and the report can
# read back, and because the failure it must catch learns its training set: MobileNetV2 with Keras' BatchNorm
# momentum on small data reaches training accuracy 1.0 while test stays at 0.10, so a loss rule would pass
# it. 1.5x is the bound a ticket's own `chance` verdict uses (lth.training.result), so the two agree.
CHANCE_ACCURACY_FACTOR = 1.5


def dense_at_chance(test_accuracy: float, num_classes: int) -> bool:
    """Whether a dense parent's test accuracy is at chance level: its tickets then have nothing to match."""
    return test_accuracy <= CHANCE_ACCURACY_FACTOR / num_classes


def chance_text(test_accuracy: float, num_classes: int) -> str:
    """`test accuracy 0.1000, at most 1.5/10`: why a parent is at chance, for warnings."""
    return f"test accuracy {test_accuracy:.4f}, at most {CHANCE_ACCURACY_FACTOR:g}/{num_classes}"
