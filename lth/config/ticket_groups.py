"""The groups that decide a ticket beyond its dense parent, each key declared once: prune and reset."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from lth.config.declare import key, when
from lth.config.vocabulary import Control, Method, OnCollapse, Scope, Structure


@dataclass(frozen=True)
class PruneConfig:
    """The `prune` group: how the mask is built, and which control replaces one ingredient."""

    method: Method = key("magnitude: one-shot at threshold; imp: levels rounds of pruning rate of the survivors")
    threshold: float = key("the fraction of weights removed", bounds="[0, 1)",
                           ignored=when("method", "imp"))
    scope: Scope = key("how t is spread over layers: global (one |w| ranking), layer (t from each), lamp "
                       "(layer-adaptive scores), erk (Erdős–Rényi-kernel); unset: lamp, or layer under "
                       "structure=channel")
    min_density: float = key("floor on every layer's kept fraction (at least ceil(min_density * size) weights); "
                             "must stay below 1 - threshold; 0 disables it", 0.0, bounds="[0, 1]")
    on_collapse: OnCollapse = key("a layer left with no weight: warn (tag it and train) or refuse (fail before "
                                  "training); never changes what is trained", "warn", runtime=True, hashed_as="warn")
    ignore: tuple[str, ...] = key("layer names kept dense; the threshold prunes the other layers", (),
                                  unordered=True)
    control: Control = key("none = the ticket; reinit = same mask, fresh initial weights; random_mask = same count "
                           "per layer, random positions", "none", varies_across="replicates")
    control_seed: int = key("seed of the control's randomness (fresh weights or mask positions)", 0,
                            bounds="[0, inf)", ignored=when("control", "none"), varies_across="replicates")
    levels: int = key("imp: prune-rewind-retrain rounds run in one job", 1, bounds="[1, inf)",
                      ignored=when("method", "magnitude"), varies_across="levels")
    rate: float = key("imp: fraction of the surviving weights removed at each level", 0.2, bounds="(0, 1)",
                      ignored=when("method", "magnitude"))
    layer_rates: Mapping[str, float] = key("imp: layers with their own rate instead of rate, each pruned within "
                                           "itself, e.g. {predictions: 0.1}; null = none", factory=dict,
                                           ignored=when("method", "magnitude"), before={})
    structure: Structure = key("which weights may go: none (any), xnnpack_1x1 (only 1x1 stride-1 convs), channel "
                               "(whole channels by L2 norm, one-shot: a ticket that compacts to a smaller network)",
                               "none", before="none")


@dataclass(frozen=True)
class ResetConfig:
    """The `reset` group: the dense epoch k the survivors are rewound to (late resetting, Frankle et al. 2019)."""

    epoch: int | Literal["auto"] = key("k: 0 = the original initialisation, at most train.epochs; auto = the "
                                       "candidate from which on the reference is stable (lth.stability.auto)",
                                       bounds="[0, inf)")
