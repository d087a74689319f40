"""Mask diagnostics: Hamming and Jaccard on hand-made masks, early-bird distances where we know which weights
swap rank, which runs are compared, and the whole path through a real MLflow store to the PNG files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest

from lth.report.collect import Point
from lth.report.diagnostic_plots import diagnostics_text, early_bird_plot, overlap_plot
from lth.report.diagnostics import Diagnostics, early_bird_distances, hamming_distance, jaccard, mask_overlaps
from lth.tracking import schema

SIZES = {"conv": 6, "head": 4}  # two layers, 10 weights: every measure must pool them


def _masks(kept: set[int]) -> dict[str, np.ndarray]:
    """Masks over SIZES' layers keeping the given flat positions (conv holds 0-5, head 6-9)."""
    flat = np.isin(np.arange(10), sorted(kept))
    return {"conv": flat[:6].reshape(2, 3), "head": flat[6:].reshape(2, 2)}


def _kernels(values: list[float]) -> dict[str, np.ndarray]:
    """Kernels over SIZES' layers from 10 flat values."""
    flat = np.asarray(values, dtype=np.float32)
    return {"conv": flat[:6].reshape(2, 3), "head": flat[6:].reshape(2, 2)}


def test_hamming_distance_is_the_fraction_of_weights_that_differ_over_all_layers() -> None:
    a, b = _masks({0, 1, 2, 7}), _masks({0, 1, 3, 8, 9})  # differ at 2, 3 (conv) and 7, 8, 9 (head)
    assert hamming_distance(a, b) == pytest.approx(0.5)
    assert hamming_distance(_masks({0, 1, 2}), _masks({0, 1, 6, 7})) == pytest.approx(0.3)  # 3 of 10 differ
    assert hamming_distance(a, a) == 0.0


def test_jaccard_is_intersection_over_union_of_the_kept_weights() -> None:
    assert jaccard(_masks({0, 1, 2, 6}), _masks({1, 2, 6, 9})) == pytest.approx(3 / 5)
    assert jaccard(_masks({0, 1}), _masks({8, 9})) == 0.0
    assert jaccard(_masks(set()), _masks(set())) == 1.0  # both keep nothing: the same (empty) mask


def test_masks_over_other_layers_or_shapes_are_refused() -> None:
    a = _masks({0, 1})
    with pytest.raises(ValueError, match="different layers"):
        hamming_distance(a, {"conv": a["conv"]})
    with pytest.raises(ValueError, match="shapes differ"):
        jaccard(a, {"conv": a["conv"].reshape(3, 2), "head": a["head"]})


EPOCH_0 = [1, -2, 3, 4, 5, 6, 7, 8, 9, 10]  # |w| ranks: position i holds the (i+1)-th smallest
EPOCH_1 = [1, -2, 3, 4, 6, -5, 7, 8, 9, 10]  # positions 4 and 5 swap ranks 5 and 6 (sign does not matter)
EPOCH_3 = [2, 1, 3, 4, 6, 5, 7, 8, 9, 10]  # positions 0 and 1 swap ranks 1 and 2


def test_early_bird_distance_counts_the_weights_that_cross_each_threshold_between_kept_epochs() -> None:
    checkpoints = {3: _kernels(EPOCH_3), 0: _kernels(EPOCH_0), 2: _kernels([3 * v for v in EPOCH_1]),
                   1: _kernels(EPOCH_1)}  # epoch 2 is epoch 1 scaled: the same ranking
    distances = early_bird_distances(checkpoints, [0.5, 0.1, 0.5], "global", 0.0)
    assert list(distances) == [0.1, 0.5]
    # t=0.5 removes the 5 smallest: the rank 5/6 swap moves 2 of 10 weights across it, the rank 1/2 swap none.
    assert distances[0.5] == [(1, pytest.approx(0.2)), (2, 0.0), (3, 0.0)]
    # t=0.1 removes only the smallest: only the rank 1/2 swap changes its mask.
    assert distances[0.1] == [(1, 0.0), (2, 0.0), (3, pytest.approx(0.2))]


def test_early_bird_uses_the_scope_and_the_floor_and_skips_epochs_that_were_not_kept() -> None:
    before, after = _kernels(EPOCH_0), _kernels(EPOCH_1)
    # Layer-wise, conv (ranks 1-6) loses its 3 smallest either way: the 5/6 swap stays inside what it keeps.
    assert early_bird_distances({0: before, 5: after}, [0.5], "layer", 0.0) == {0.5: [(5, 0.0)]}
    small_head = [10, 20, 30, 40, 50, 60, 0.1, 0.2, 0.3, 0.4]
    swapped = [10, 20, 30, 40, 50, 60, 0.3, 0.2, 0.1, 0.4]  # head positions 6 and 8 swap
    checkpoints = {0: _kernels(small_head), 1: _kernels(swapped)}
    assert early_bird_distances(checkpoints, [0.5], "global", 0.0) == {0.5: [(1, 0.0)]}  # head emptied both times
    floored = early_bird_distances(checkpoints, [0.5], "global", 0.5)  # head keeps its 2 largest: 8, 9, then 6, 9
    assert floored == {0.5: [(1, pytest.approx(0.2))]}
    assert early_bird_distances({4: before}, [0.5], "global", 0.0) == {0.5: []}  # one kept epoch: no distance


def _point(kind: str, seed: int, scope: str, k: int, remaining: float = 0.5, *, run: str,
           status: str = "FINISHED", settings: tuple = (("prune.min_density", "0.0"),)) -> Point:
    return Point(kind, seed, 1 - remaining, k, status, remaining, 0.9, False, False, run, scope,
                 settings=(*settings, ("prune.scope", scope), ("reset.epoch", str(k))))


def test_overlaps_compare_runs_of_one_kind_and_sparsity_that_differ_in_exactly_one_of_seed_scope_reset() -> None:
    masks = {
        "s0 global k1": _masks({0, 1, 2, 3, 4}),
        "s1 global k1": _masks({0, 1, 2, 5, 6}),  # seeds, with s0 global k1: 3/7
        "s0 lamp k1": _masks({0, 1, 5, 6, 7}),  # scopes, with s0 global k1: 2/8
        "s0 global k2": _masks({0, 1, 2, 3, 4}),  # reset epochs: a one-shot mask does not move with k
        "s1 lamp k1": _masks({0, 5, 6, 7, 8}),  # scopes with s1 global k1: 3/7; seeds with s0 lamp k1: 4/6
        "rerun": _masks({5, 6, 7, 8, 9}), "floor": _masks({9}), "reinit": _masks({9}), "failed": _masks({9}),
        "t=0.8": _masks({0, 1}), "imp k1": _masks({0, 1, 2, 3, 4}), "imp k2": _masks({0, 1, 2, 3, 9}),
    }
    points = [
        _point("ticket", 0, "global", 1, run="s0 global k1"), _point("ticket", 1, "global", 1, run="s1 global k1"),
        _point("ticket", 0, "lamp", 1, run="s0 lamp k1"), _point("ticket", 0, "global", 2, run="s0 global k2"),
        _point("ticket", 1, "lamp", 1, run="s1 lamp k1"),
        _point("ticket", 1, "global", 1, run="rerun"),  # the same run again: counted once, the first
        _point("ticket", 1, "global", 1, run="floor", settings=(("prune.min_density", "0.1"),)),  # another setting
        _point("reinit", 1, "global", 1, run="reinit"),  # a control: not a mask of its own
        _point("ticket", 2, "global", 1, run="failed", status="FAILED"),
        _point("ticket", 1, "global", 1, 0.2, run="t=0.8"),  # alone at its sparsity
        _point("imp", 0, "global", 1, run="imp k1"), _point("imp", 0, "global", 2, run="imp k2"),
    ]
    asked: list[str] = []
    overlaps = mask_overlaps(points, lambda run_id: asked.append(run_id) or masks[run_id])
    assert overlaps == {
        "seeds": [(0.5, pytest.approx((3 / 7 + 4 / 6) / 2), 2)],
        "scopes": [(0.5, pytest.approx((2 / 8 + 3 / 7) / 2), 2)],
        "reset epochs": [(0.5, 1.0, 1)],
        "IMP reset epochs": [(0.5, pytest.approx(4 / 6), 1)],  # an IMP mask does move with k; kept apart
    }
    assert sorted(asked) == sorted(set(asked))  # each run's mask is read once
    assert {"rerun", "floor", "reinit", "failed", "t=0.8"}.isdisjoint(asked)


def test_the_figures_and_text_draw_what_is_given_and_nothing_when_there_is_nothing() -> None:
    d = Diagnostics({"lamp": {0.8: [(1, 0.25), (2, 0.05), (3, 0.031)]}}, {"seeds": [(0.8, 0.62, 3)]}, 0, (0, 1, 2, 3))
    [line] = [ln for ln in early_bird_plot(d.early_bird, "t").axes[0].get_lines() if ln.get_gid() == "early_bird:lamp:0.8"]
    assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == [0.25, 0.05, 0.031]
    [marks] = [ln for ln in overlap_plot(d.overlaps, "t").axes[0].get_lines() if ln.get_gid() == "overlap:seeds"]
    assert list(marks.get_xdata()) == [80.0] and list(marks.get_ydata()) == [0.62]
    text = diagnostics_text(d)
    assert "at 80% sparsity the mask changes by 3.1% from epoch 2 to 3 (every change under 10% from epoch 2 on)" in text
    assert "differ only in seed overlap with mean Jaccard 0.62 at 20% remaining (3 pairs)" in text
    assert early_bird_plot({"lamp": {0.8: []}}, "t") is None and overlap_plot({}, "t") is None
    assert Diagnostics().empty and diagnostics_text(Diagnostics()) == ""


# Through a real MLflow store ------------------------------------------------------------------------------------

FAMILY = "fam0123"


def _log_npz(arrays: dict[str, np.ndarray], artifact: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / Path(artifact).name
        np.savez(path, **arrays)
        mlflow.log_artifact(str(path), str(Path(artifact).parent) if "/" in artifact else None)


def _log_ticket(experiment: str, seed: int, threshold: float, k: int, mask: dict[str, np.ndarray]) -> None:
    tags = {schema.ROLE: schema.TICKET_ROLE, schema.FAMILY: FAMILY,
            **schema.SparseTags(threshold, k, "global", "magnitude", "none", seed).tags()}
    with mlflow.start_run(experiment_id=experiment, tags=tags):
        mlflow.log_params({"prune.scope": "global", "prune.min_density": "0.0", "prune.threshold": str(threshold),
                           "reset.epoch": str(k)})
        mlflow.log_metrics({schema.TEST_ACCURACY: 0.9, schema.WEIGHTS_REMAINING: float(np.mean(
            np.concatenate([m.ravel() for m in mask.values()])))})
        _log_npz(mask, schema.MASK)


def test_family_diagnostics_read_the_dense_checkpoints_and_ticket_masks_and_write_both_figures(tmp_path: Path) -> None:
    from lth import tracking
    from lth.report.collect import collect
    from lth.report.diagnostic_plots import write_diagnostics
    from lth.report.diagnostics import family_diagnostics
    from lth.training.models import kernel_path

    previous = mlflow.get_tracking_uri()
    try:
        experiment = tracking.connect(f"sqlite:///{tmp_path / 'mlflow.db'}", "diag")

        def weights(values: list[float]) -> dict[str, np.ndarray]:  # kernels plus a bias that is never pruned
            return {**{kernel_path(n): k for n, k in _kernels(values).items()}, "conv/bias": np.full(3, 100.0)}

        dense_tags = {schema.ROLE: schema.DENSE_ROLE, **schema.dense_tags("d", FAMILY, 0, "1"),
                      **schema.keep_epochs_tag(frozenset({0, 1, 3}))}  # 3 is the last: its weights are the final ones
        with mlflow.start_run(experiment_id=experiment, tags=dense_tags):
            mlflow.log_metrics({schema.TEST_ACCURACY: 0.95, schema.EPOCHS_TRAINED: 3})
            _log_npz(weights(EPOCH_0), schema.checkpoint(0))
            _log_npz(weights(EPOCH_1), schema.checkpoint(1))
            _log_npz(weights(EPOCH_3), schema.FINAL_WEIGHTS)
            _log_npz(weights([0.0] * 10), schema.checkpoint(2))  # not kept by the tag: must not be read
        seed0, seed1 = _masks({5, 6, 7, 8, 9}), _masks({4, 6, 7, 8, 9})
        for seed, k, mask in ((0, 1, seed0), (1, 1, seed1), (0, 2, seed0)):
            _log_ticket(experiment, seed, 0.5, k, mask)
        _log_ticket(experiment, 0, 0.1, 1, _masks(set(range(1, 10))))

        family = collect(experiment, FAMILY)
        found = family_diagnostics(family)
        assert found.dense_seed == 0 and found.epochs == (0, 1, 3)
        assert found.early_bird == {"global": {0.1: [(1, 0.0), (3, pytest.approx(0.2))],
                                               0.5: [(1, pytest.approx(0.2)), (3, 0.0)]}}
        assert found.overlaps == {"seeds": [(0.5, pytest.approx(4 / 6), 1)], "reset epochs": [(0.5, 1.0, 1)]}
        written = write_diagnostics(family, tmp_path / "report", found)
        assert written == [tmp_path / "report" / "early_bird.png", tmp_path / "report" / "mask_overlap.png"]
        assert all(path.read_bytes().startswith(b"\x89PNG") for path in written)
        assert "from epoch 1 to 3" in diagnostics_text(found)

        family.points[:] = []  # no ticket: nothing applies, and no file is written
        assert family_diagnostics(family).empty and write_diagnostics(family, tmp_path / "none") == []
    finally:
        mlflow.set_tracking_uri(previous)
