"""How `scripts/finetune.py` trains: the recipes of SimCLR (v1), SimCLRv2 and linear evaluation, chosen from the
model's config unless flags override them.

* **SimCLRv2** (a model with the v2 projection head: three layers with BatchNorm, as the v2 releases and
  ``pretrain.py --projection_layers 3 --projection_batch_norm``): LARS with learning rate 0.005 x sqrt(B), no weight
  decay, a zero-initialised classifier on the first projection-head layer with 1 % and 10 % of the labels (on h with
  all of them). The classifier, like biases and BatchNorm, is kept out of LARS's layer adaptation.
* **SimCLR** (any other model): Nesterov momentum 0.9, learning rate 0.05 x B / 256, no weight decay, the classifier
  on h (or where the model's config puts it), initialised N(0, 0.01).
* **Linear evaluation** (``--freeze_encoder``, any model): Nesterov momentum 0.9, learning rate 0.1 x B / 256, weight
  decay 1e-6, a zero-initialised classifier on h.

All of them: no warm-up, a cosine schedule, crop + flip as the only augmentation. B is the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .arguments import CLASSIFIER_INITS, OPTIMIZERS, RECIPES

SIMCLR_V2, SIMCLR_V1 = RECIPES  # what --recipe may choose
LINEAR_EVAL = "linear_eval"  # --freeze_encoder's
RECIPE_NAMES = {SIMCLR_V2: "SimCLRv2 fine-tuning", SIMCLR_V1: "SimCLR fine-tuning", LINEAR_EVAL: "linear evaluation"}
OPTIMIZER_NAMES = {
    "lars": "LARS (momentum 0.9, trust coefficient 0.001)",
    "momentum": "SGD with Nesterov momentum 0.9",
}


@dataclass(frozen=True)
class RecipeDefaults:
    """A recipe's settings before flags override them; the learning rate is ``base_learning_rate`` scaled with the
    global batch by ``lr_scaling`` (``"sqrt"``: x sqrt(B), ``"linear"``: x B / 256)."""

    optimizer: str
    base_learning_rate: float
    lr_scaling: str
    weight_decay: float
    classifier_init: str


# SimCLRv2's fine-tuning, google-research/simclr@383d414 README.md:157-166 (the whole network on 1 % of the labels):
#   --optimizer=lars --learning_rate=0.005 --learning_rate_scaling=sqrt --weight_decay=0 --warmup_epochs=0
#   --zero_init_logits_layer=True --global_bn=True --num_proj_layers=3 --ft_proj_selector=1
# model_util.py:94-100: LARS keeps 'batch_normalization', 'bias' and 'head_supervised' (the classifier) out of weight
# decay and, by default (lars_optimizer.py:78-81), out of layer adaptation.
V2_DEFAULTS = RecipeDefaults("lars", 0.005, "sqrt", 0.0, "zeros")
# SimCLR's fine-tuning (Chen et al. 2020a, appendix B.5): Nesterov momentum 0.9, 0.05 x B / 256, no weight decay;
# the classifier initialised as the official linear_layer (model_util.py:130-134: random_normal stddev 0.01).
V1_DEFAULTS = RecipeDefaults("momentum", 0.05, "linear", 0.0, "normal")
# Linear evaluation, README.md:136-143: --optimizer=momentum --learning_rate=0.1 (linear scaling, run.py:46-48's
# default) --weight_decay=1e-6 --zero_init_logits_layer=True --fine_tune_after_block=4 --warmup_epochs=0; the
# momentum optimizer is Nesterov's (model_util.py:88-90).
LINEAR_EVAL_DEFAULTS = RecipeDefaults("momentum", 0.1, "linear", 1e-6, "zeros")
DEFAULTS = {SIMCLR_V2: V2_DEFAULTS, SIMCLR_V1: V1_DEFAULTS, LINEAR_EVAL: LINEAR_EVAL_DEFAULTS}
# SimCLRv2 fine-tunes from the first head layer with 1 % and 10 % of the labels, from h with all of them (the paper's
# section 3; README.md:166 --ft_proj_selector=1, run.py:210-213 and model_util.py:170-176 for what the selector picks)
V2_HEAD_LAYER_BELOW_ALL_LABELS = 1


def is_simclr_v2(config: Any) -> bool:
    """Whether ``config`` is a SimCLRv2 model's: the v2 projection head (three layers with BatchNorm)."""
    return getattr(config, "projection_layers", 0) == 3 and bool(getattr(config, "projection_batch_norm", False))


@dataclass(frozen=True)
class FinetuneRecipe:
    """How a fine-tuning run trains, defaults and flags resolved; see the module docstring."""

    recipe: str  # SIMCLR_V2, SIMCLR_V1 or LINEAR_EVAL
    optimizer: str  # "lars" or "momentum" (Nesterov)
    base_learning_rate: float | None  # None when --learning_rate gave the rate itself
    lr_scaling: str | None
    learning_rate_flag: float | None  # --learning_rate
    weight_decay: float
    classifier_projection_layers: int
    classifier_init: str  # "zeros" or "normal" (N(0, 0.01)); a reused classifier keeps its weights
    reuse_classifier: bool

    def learning_rate(self, global_batch: int) -> float:
        """The learning rate applied at global batch ``global_batch``: ``--learning_rate`` as given, or the recipe's
        base rate scaled with the batch."""
        from ..optim import scaled_learning_rate  # here: model cards describe recipes without torch

        if self.learning_rate_flag is not None:
            return self.learning_rate_flag
        return scaled_learning_rate(self.base_learning_rate, global_batch, self.lr_scaling)

    def learning_rate_rule(self, global_batch: int) -> str:
        """``0.04 = 0.005 x sqrt(B), B = 64``, or ``0.01 (--learning_rate)``."""
        lr = self.learning_rate(global_batch)
        if self.learning_rate_flag is not None:
            return f"{lr:.4g} (--learning_rate)"
        rule = "sqrt(B)" if self.lr_scaling == "sqrt" else "B / 256"
        return f"{lr:.4g} = {self.base_learning_rate:g} x {rule}, B = {global_batch}"

    def details(self, global_batch: int) -> dict[str, Any]:
        """What ``eval_results.json`` and the card record of the recipe."""
        return {
            "recipe": self.recipe,
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate(global_batch),
            "learning_rate_rule": self.learning_rate_rule(global_batch),
            "weight_decay": self.weight_decay,
            "classifier_projection_layers": self.classifier_projection_layers,
            "classifier_init": "reused" if self.reuse_classifier else self.classifier_init,
        }


def finetune_recipe(config: Any, args: Any) -> FinetuneRecipe:
    """The recipe for fine-tuning the model of ``config`` as ``args`` (:class:`FinetuneArguments`) ask: the one its
    config implies (:func:`is_simclr_v2`), or ``--recipe``'s, or linear evaluation with ``--freeze_encoder``; every
    setting a flag gives overrides the recipe's."""
    if args.freeze_encoder:
        if args.recipe is not None:
            raise UsageError("--recipe chooses a fine-tuning recipe; --freeze_encoder is linear evaluation: drop one")
        recipe = LINEAR_EVAL
    else:
        recipe = args.recipe or (SIMCLR_V2 if is_simclr_v2(config) else SIMCLR_V1)
    defaults = DEFAULTS[recipe]
    layers = args.classifier_projection_layers
    if layers is None:
        if recipe == SIMCLR_V2:
            layers = V2_HEAD_LAYER_BELOW_ALL_LABELS if args.label_fraction < 1 else 0
        elif recipe == SIMCLR_V1:
            layers = getattr(config, "classifier_projection_layers", 0)  # the model's own (0 for a SimCLRModel)
        else:
            layers = 0  # linear evaluation is on h
    head = getattr(config, "projection_layers", 0)
    if layers > head:
        raise UsageError(
            f"--model has a projection head of {head} layers: the classifier cannot sit on layer {layers}; pass "
            f"--classifier_projection_layers {min(head, 1)} or less"
        )
    return FinetuneRecipe(
        recipe=recipe,
        optimizer=args.optimizer or defaults.optimizer,
        base_learning_rate=None if args.learning_rate is not None else defaults.base_learning_rate,
        lr_scaling=None if args.learning_rate is not None else defaults.lr_scaling,
        learning_rate_flag=args.learning_rate,
        weight_decay=defaults.weight_decay if args.weight_decay is None else args.weight_decay,
        classifier_projection_layers=layers,
        classifier_init=args.classifier_init or defaults.classifier_init,
        reuse_classifier=args.reuse_classifier,
    )


def describe_recipe(details: dict[str, Any]) -> str | None:
    """The recipe of a fine-tuning record in words, for the model card; None for a record that has none."""
    if "recipe" not in details:
        return None
    layers = details.get("classifier_projection_layers", 0)
    place = "on h" if not layers else f"on projection-head layer {layers}"
    init = details.get("classifier_init")
    classifier = {
        "zeros": "zero-initialised",
        "normal": "initialised N(0, 0.01)",
        "reused": "started from the model's own classifier",
    }
    decay = details.get("weight_decay") or 0
    return (
        f"{RECIPE_NAMES.get(details['recipe'], details['recipe'])}: "
        f"{OPTIMIZER_NAMES.get(details.get('optimizer'), details.get('optimizer'))}, learning rate "
        f"{details.get('learning_rate_rule', details.get('learning_rate'))}, "
        f"{'weight decay ' + format(decay, 'g') if decay else 'no weight decay'}, cosine schedule without warm-up, "
        f"the classifier {place}, {classifier.get(init, init)}"
    )


__all__ = [
    "CLASSIFIER_INITS",
    "DEFAULTS",
    "FinetuneRecipe",
    "LINEAR_EVAL",
    "OPTIMIZERS",
    "RECIPES",
    "SIMCLR_V1",
    "SIMCLR_V2",
    "describe_recipe",
    "finetune_recipe",
    "is_simclr_v2",
]
