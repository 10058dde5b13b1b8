"""The model card of a converted official checkpoint: its source, the published top-1 and what was verified."""

from __future__ import annotations

from huggingface_hub import ModelCard, ModelCardData

from ..configuration_simclr import SimCLRConfig
from ..hub.card import find_template
from .sources import SourceWeights
from .variants import Variant

__all__ = ["TEMPLATE_NAME", "build_official_card"]

TEMPLATE_NAME = "simclr_official.md"
TAGS = ["simclr", "self-supervised", "image-feature-extraction", "image-classification", "timm", "converted"]


def _source_kind(kind: str, released: bool) -> str:
    if kind == "tensorflow":
        return "the official TensorFlow checkpoint" if released else "a TensorFlow checkpoint"
    return "a PyTorch copy of the official checkpoint" if released else "a PyTorch copy"


def _architecture_line(name: str, config: SimCLRConfig) -> str:
    width = f"`width_multiplier={config.width_multiplier}`"
    if config.sk_ratio:
        return (
            f"{name}: timm's ResNet with the official selective-kernel blocks, ResNet-D stem and shortcuts "
            f"(`sk_ratio={config.sk_ratio}`, `selective_kernel.py`), the depth of `{config.backbone}`, {width}"
        )
    return f"{name}, timm `{config.backbone}` with {width}"


def build_official_card(
    repo_id_or_name: str,
    config: SimCLRConfig,
    weights: SourceWeights,
    variant: Variant | None,
    verified: list[str],
) -> ModelCard:
    """Fill the card template for a conversion; the only accuracy it states is the README's, marked as such."""
    architecture = weights.architecture
    model_name = repo_id_or_name.rsplit("/", 1)[-1]
    title = variant.name if variant else f"SimCLR {architecture.name}"
    published = variant.published_top1 if variant else None
    notes = list(weights.notes)
    if variant and variant.generation == "SimCLRv2" and variant.category is None:
        notes.append(
            "The source does not name its release folder; the published number shown is the `pretrained` one (the "
            "default of the script that made the PyTorch copies)."
        )
    kept = config.classifier_projection_layers
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        tags=list(TAGS),
        datasets=["ILSVRC/imagenet-1k"] if variant else None,
        license="apache-2.0",
        model_name=model_name,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(find_template(TEMPLATE_NAME)),
        repo_id=repo_id_or_name,
        model_name=model_name,
        title=title,
        released=variant is not None,
        source=weights.description,
        source_kind=_source_kind(weights.kind, variant is not None),
        step=weights.step,
        official_location=variant.location if variant else None,
        architecture=_architecture_line(architecture.name, config),
        feature_dim=architecture.num_features,
        projection_layers=architecture.projection_layers,
        projection_dim=architecture.projection_dim,
        num_labels=architecture.num_classes,
        classifier_input=f"the output of the first {kept} projection-head layer(s)" if kept else "*h*",
        classifier_projection_layers=kept,
        batch_norm_eps=config.batch_norm_eps,
        published_top1=published[0] if published else None,
        published_metric=published[1] if published else None,
        verified=verified,
        notes=notes,
    )
