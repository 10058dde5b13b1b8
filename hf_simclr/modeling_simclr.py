"""SimCLR models: a timm encoder, a projection head and the NT-Xent loss as transformers `PreTrainedModel`s.

This file is copied into saved model folders for ``trust_remote_code`` users: it imports only torch, timm,
transformers (and safetensors, which transformers requires) and its siblings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import timm
import torch
from safetensors import SafetensorError, safe_open
from timm.layers import create_pool2d
from timm.models._manipulate import checkpoint_seq
from timm.models.resnet import ResNet
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from transformers import BitImageProcessor, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.modeling_outputs import BackboneOutput, ImageClassifierOutput
from transformers.utils import ModelOutput, cached_file
from transformers.utils.generic import can_return_tuple

from .configuration_simclr import SimCLRConfig, check_backbone_kwargs, check_image_processor_config, encoder_stage_names
from .loss import NTXentLoss
from .selective_kernel import create_selective_kernel_resnet

_AUTO_MAP = {
    "AutoConfig": "configuration_simclr.SimCLRConfig",
    "AutoModel": "modeling_simclr.SimCLRModel",
    "AutoModelForImageClassification": "modeling_simclr.SimCLRForImageClassification",
    "AutoBackbone": "modeling_simclr.SimCLRBackbone",
}
# from_pretrained arguments that say where config.json comes from (transformers' DownloadKwargs)
_DOWNLOAD_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")
WEIGHTS_NAME, WEIGHTS_INDEX_NAME, IMAGE_PROCESSOR_NAME = (
    "model.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
)
# safetensors dtypes a weight may be stored in: loading casts them to the model's dtype without loss of meaning
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
# Evaluation resizes the short side to size / crop_pct, then centre-crops size (224 -> 256 -> 224); for models trained
# at SMALL_IMAGE_SIZE or below it keeps the whole image (crop_pct 1), as the official code does at CIFAR-10's 32 px.
CROP_PCT = 0.875
SMALL_IMAGE_SIZE = 32


def eval_crop_pct(image_size: int) -> float:
    """The share of the short side that evaluation keeps: `CROP_PCT`, or 1 (no crop) for a model trained at 32 px or
    less."""
    return 1.0 if image_size <= SMALL_IMAGE_SIZE else CROP_PCT


def eval_image_size(config: SimCLRConfig) -> int:
    """The resolution of the evaluation preprocessing: ``config.eval_image_size``, else the training resolution."""
    return config.eval_image_size or config.image_size


def build_image_processor(config: SimCLRConfig) -> BitImageProcessor:
    """The evaluation preprocessing of a SimCLR model: resize, centre crop, normalise (a built-in transformers class,
    so `AutoImageProcessor` and pipelines load it without custom code). The kNN monitor of pretraining,
    `scripts/linear_eval.py` and `scripts/finetune.py` evaluate through it too."""
    size = eval_image_size(config)
    return BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": round(size / eval_crop_pct(config.image_size))},
        resample=3,  # bicubic
        do_center_crop=True,
        crop_size={"height": size, "width": size},
        do_normalize=True,
        image_mean=list(config.image_mean),
        image_std=list(config.image_std),
        do_convert_rgb=True,
    )


@dataclass
class SimCLRModelOutput(ModelOutput):
    """Output of [`SimCLRModel`].

    When `pixel_values_2` is given the two views are encoded in one pass: every tensor below then has 2B rows,
    the first B for `pixel_values` and the last B for `pixel_values_2`.

    With `return_dict=False` the tuple holds the fields below in this order, those that are None left out.

    Args:
        loss: NT-Xent over the 2B views (only when two views are given).
        last_hidden_state: the encoder's final feature map, `(B, C, H, W)` for CNNs.
        pooler_output: the representation h used for transfer learning, `(B, C)`.
        projections: z = projection_head(h), `(B, projection_dim)`, the vectors the loss compares.
        hidden_states: with `output_hidden_states=True`, the feature map of every stage of `config.stage_names`, in
            that order: for a ResNet the stem's (after its max-pool) then each stage's, as transformers'
            `ResNetModel` returns them; the last one is `last_hidden_state`.
    """

    loss: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    projections: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def encoder_stages(encoder: nn.Module, pixel_values: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(final feature map, feature map of every stage)`` of a timm encoder in one pass, the stages those of
    `encoder_stage_names`: the hidden states of [`SimCLRModel`] and the feature maps of [`SimCLRBackbone`].

    The final feature map is the encoder's ``forward_features`` output (for a ResNet, the last stage's map itself).
    """
    if isinstance(encoder, ResNet):  # timm's own intermediates start before the stem's max-pool; ResNetModel's after
        x = encoder.maxpool(encoder.act1(encoder.bn1(encoder.conv1(pixel_values))))
        maps = [x]
        for layer in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4):
            x = checkpoint_seq(layer, x) if encoder.grad_checkpointing else layer(x)  # as timm's forward_features
            maps.append(x)
        return x, maps
    if not hasattr(encoder, "forward_intermediates"):
        raise ValueError(
            f"timm's {type(encoder).__name__} gives no intermediate feature maps (forward_intermediates): use it "
            "without output_hidden_states, or as a backbone choose a timm model that has them"
        )
    final, maps = encoder.forward_intermediates(pixel_values)
    return final, list(maps)


class BatchNorm1dNoCentre(nn.BatchNorm1d):
    """BatchNorm with a learned scale and no learned centre (the official code's `center=False`): z stays centred."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        nn.init.ones_(self.weight)


class SimCLRProjectionHead(nn.Sequential):
    """g(h): (Dense-ReLU) blocks then a final Dense (SimCLR: 2 layers, SimCLRv2: 3 layers; 0 layers: z = h).

    With `batch_norm`, as the official code: every Dense has no bias and is followed by BatchNorm; the last
    BatchNorm has a learned scale but no learned centre. `keep_layers` builds only the first layers (with the same
    module indices, hence the same state-dict keys), for a classifier on an intermediate layer of the head.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int,
        batch_norm: bool,
        keep_layers: int | None = None,
    ) -> None:
        layers: list[nn.Module] = []
        dim = in_dim
        keep_layers = num_layers if keep_layers is None else keep_layers
        for index in range(num_layers):
            if index == keep_layers:
                break
            last = index == num_layers - 1
            width = out_dim if last else hidden_dim
            layers.append(nn.Linear(dim, width, bias=not batch_norm))
            if batch_norm:
                layers.append(BatchNorm1dNoCentre(width) if last else nn.BatchNorm1d(width))
            if not last:
                layers.append(nn.ReLU(inplace=True))
            dim = width
        self.out_features = dim
        super().__init__(*layers)


class SimCLRPreTrainedModel(PreTrainedModel):
    config_class = SimCLRConfig
    config: SimCLRConfig
    base_model_prefix = "simclr"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    # device_map="auto" keeps each residual block on one device: split, its shortcut would be added to a tensor on
    # another device. An encoder that is not a timm ResNet is kept whole instead (see post_init).
    _no_split_modules = ["BasicBlock", "Bottleneck", "SelectiveKernelBottleneck"]
    # through timm's set_grad_checkpointing (per residual block), where the encoder has it (see post_init)
    supports_gradient_checkpointing = True

    def post_init(self) -> None:
        encoder = getattr(self, "encoder", None)  # the timm encoder every SimCLR model class builds first
        if encoder is None:
            super().post_init()
            return
        if not isinstance(encoder, ResNet):
            self._no_split_modules = [type(encoder).__name__]
        self.supports_gradient_checkpointing = hasattr(encoder, "set_grad_checkpointing")
        # Built with real tensors (not on the meta device), the encoder and the projection head keep the values they
        # were built with (timm's initialisation, e.g. the zero scale of the last BatchNorm of each residual block;
        # torch's defaults), so a seed builds the same model as it always did: _init_weights fills only tensors
        # without values, and the classifier.
        for module in (encoder, getattr(self, "projection_head", None)):
            for tensor in _tensors(module, recurse=True) if module is not None else ():
                if tensor.device.type != "meta":
                    tensor._is_hf_initialized = True
        super().post_init()

    def _create_encoder(self) -> nn.Module:
        config = self.config
        if not timm.is_model(config.backbone):
            raise ValueError(
                f"backbone {config.backbone!r} is not a timm model name; see timm.list_models() for the choices"
            )
        # checked again here: the config may have been changed since it was validated
        check_backbone_kwargs(config.backbone_kwargs)
        kwargs = dict(config.backbone_kwargs)
        width = getattr(config, "width_multiplier", 1)
        sk_ratio = getattr(config, "sk_ratio", 0)  # getattr: configs saved before the field existed
        if sk_ratio:
            encoder = create_selective_kernel_resnet(config.backbone, width, sk_ratio, **kwargs)
        else:
            if width != 1:
                kwargs["channels"] = tuple(int(width * c) for c in _RESNET_CHANNELS)
            try:
                encoder = timm.create_model(config.backbone, pretrained=False, num_classes=0, **kwargs)
            except AssertionError as err:  # timm checks some arguments with bare asserts, which say nothing
                raise ValueError(
                    f"backbone {config.backbone!r} does not build with backbone_kwargs {config.backbone_kwargs}: "
                    f"timm refused them ({err or 'a failed assertion'}); fix backbone_kwargs"
                ) from None
            except TypeError as err:
                if width == 1:
                    raise
                raise ValueError(
                    f"width_multiplier applies to timm ResNets with a 7x7 stem (resnet50, resnet101, ...), not "
                    f"{config.backbone!r} ({err})"
                ) from None
            if width != 1:
                _widen_stem(encoder, int(width * _RESNET_CHANNELS[0]), config.backbone)
        if getattr(config, "tf_same_stem_pool", False):
            pool = getattr(encoder, "maxpool", None)
            if type(pool) is not nn.MaxPool2d:
                raise ValueError(
                    f"tf_same_stem_pool needs a backbone whose stem ends in a max-pool (timm ResNets), not "
                    f"{config.backbone!r}: set it to false"
                )
            encoder.maxpool = create_pool2d("max", kernel_size=pool.kernel_size, stride=pool.stride, padding="same")
        if getattr(config, "cifar_stem", False):  # getattr: configs saved before the field existed
            use_cifar_stem(encoder)
        return encoder

    def _create_projection_head(self, keep_layers: int | None = None) -> SimCLRProjectionHead:
        config = self.config
        return SimCLRProjectionHead(
            self.encoder.num_features,
            config.projection_hidden_dim or self.encoder.num_features,
            config.projection_dim,
            config.projection_layers,
            config.projection_batch_norm,
            keep_layers=keep_layers,
        )

    def _set_batch_norm_eps(self) -> None:
        eps = getattr(self.config, "batch_norm_eps", None)
        if eps is not None:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eps = eps

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the tensors of `module` that hold no values yet: those of a model built on the meta device
        (then `init_weights()`), and those a checkpoint does not have when `from_pretrained` loads it.

        transformers calls this for every module and skips the ones without tensors of their own (the encoder and
        head containers), so it acts on leaf modules: an encoder leaf gets the values timm's own initialisation gives
        it, the head's Linear and BatchNorm layers torch's defaults (those they are built with). Loaded tensors, and
        those of an encoder and a head built on a real device (see post_init), are left alone.
        """
        if not any(not getattr(t, "_is_hf_initialized", False) for t in _tensors(module)):
            return
        encoder = getattr(self, "encoder", None)
        if encoder is not None and any(module is m for m in encoder.modules()):
            self._init_encoder_as_timm()
        elif isinstance(module, nn.Linear):  # nn.Linear.reset_parameters, per tensor
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                init.uniform_(module.bias, -1 / math.sqrt(module.in_features), 1 / math.sqrt(module.in_features))
        elif isinstance(module, _BatchNorm):
            _init_batch_norm(module)

    def _init_encoder_as_timm(self) -> None:
        """Give every encoder tensor without values the one timm's initialisation gives it (kaiming convolutions,
        zero-initialised last BatchNorm of each residual block, fresh running statistics, ...): copied from an
        encoder built from the config, so any timm backbone, width and stem initialises as timm builds it."""
        with torch.device("cpu"):
            reference = dict(_named_tensors(self._create_encoder()))
        for name, tensor in _named_tensors(self.encoder):
            if not getattr(tensor, "_is_hf_initialized", False) and tensor.device.type != "meta":
                init.copy_(tensor, reference[name])
                tensor._is_hf_initialized = True

    def _set_gradient_checkpointing(self, enable: bool = True, *args, **kwargs) -> None:
        """Checkpoint each residual block of the encoder with timm's own `set_grad_checkpointing` (timm's
        `checkpoint_seq`, non-reentrant unless TIMM_REENTRANT_CKPT is set; transformers'
        `gradient_checkpointing_kwargs` and `every_n_layers` do not reach it). The backward pass recomputes each
        block's forward, BatchNorm layers included: `_keep_running_stats_on_recompute` keeps their running
        statistics at what the forward pass made them, so they are updated once per step, as without
        checkpointing."""
        self.encoder.set_grad_checkpointing(enable)
        for handle in self.__dict__.pop("_recompute_hooks", []):
            handle.remove()
        if enable:
            self._recompute_hooks = [
                m.register_forward_pre_hook(_keep_running_stats_on_recompute)
                for m in self.encoder.modules()
                if isinstance(m, _BatchNorm)
            ]

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether the encoder checkpoints its blocks (what `is_activation_checkpointing` reads)."""
        return bool(getattr(self.encoder, "grad_checkpointing", False))

    def _encode(
        self, pixel_values: torch.Tensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """``(final feature map, h, the stages' feature maps or None)``."""
        hidden_states = None
        if output_hidden_states:
            feature_map, maps = encoder_stages(self.encoder, pixel_values)
            hidden_states = tuple(maps)
        else:
            feature_map = self.encoder.forward_features(pixel_values)
        pooled = self.encoder.forward_head(feature_map, pre_logits=True)
        return feature_map, pooled, hidden_states

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):  # noqa: D102 - as PreTrainedModel's
        source = pretrained_model_name_or_path
        # Weights are safetensors only: a pytorch_model.bin is a pickle, and unpickling can run code from the file.
        if kwargs.get("use_safetensors") is False:
            raise ValueError(f"SimCLR models load only from safetensors weights; {source}: drop use_safetensors=False")
        kwargs["use_safetensors"] = True
        config = kwargs.get("config")
        if source is not None and not isinstance(config, PreTrainedConfig):
            # Another model's config would otherwise build a default SimCLR model and fail later on unrelated keys.
            download = {k: kwargs[k] for k in _DOWNLOAD_KWARGS if k in kwargs}
            found = cls.config_class.get_config_dict(config or source, **download)[0].get("model_type")
            if found != cls.config_class.model_type:
                raise ValueError(
                    f"{source} holds a {found or 'unknown'!r} model, not a SimCLR one (config.json model_type must be "
                    f"{cls.config_class.model_type!r}): load it with its own class, e.g. AutoModel"
                )
        if source is not None and kwargs.get("state_dict") is None:
            # before anything is allocated: a pipeline loads this model first, then the image processor
            download = {k: kwargs[k] for k in _DOWNLOAD_KWARGS if k in kwargs}
            _check_saved_image_processor(source, download)
            _check_weight_dtypes(source, download)
        # A checkpoint whose encoder weights are missing would otherwise load with random encoder weights
        # and only a warning: refuse it instead.
        wants_info = kwargs.pop("output_loading_info", False)
        # from_pretrained(None, config=..., state_dict={}) builds a model through the loading path without weights
        loads_weights = source is not None or bool(kwargs.get("state_dict"))
        try:
            model, info = super().from_pretrained(source, *args, output_loading_info=True, **kwargs)
        except SafetensorError as err:
            raise OSError(
                f"The weights of {source} are truncated or corrupt ({err}): download them again "
                "(force_download=True) or save the model again"
            ) from err
        missing = sorted(k for k in info["missing_keys"] if k.startswith("encoder."))
        if missing and loads_weights:
            raise ValueError(
                f"{source or 'state_dict'} has no weights for {len(missing)} encoder tensors (e.g. {missing[0]}): "
                f"it is not a checkpoint of backbone {model.config.backbone!r}; point to a folder saved by "
                "SimCLRModel.save_pretrained"
            )
        broken = next((k for k, t in model.state_dict().items() if not _finite(t)), None)
        if broken is not None:
            raise ValueError(
                f"{source}: the weight {broken} holds NaN or infinite values, so every output would be NaN: load a "
                "checkpoint saved before the training diverged, or save the model again"
            )
        if getattr(model.config, "freeze_encoder", False) and hasattr(model, "freeze_encoder"):
            # loading replaced the parameters frozen in __init__
            model.freeze_encoder()
        return (model, info) if wants_info else model

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """As `PreTrainedModel.save_pretrained`, plus the image processor (`preprocessor_config.json`), so that the
        folder loads in `pipeline("image-feature-extraction")` and with `AutoImageProcessor`."""
        # Either head loads from either checkpoint, so the saved config maps both Auto classes to this code.
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **_AUTO_MAP}
        if kwargs.get("is_main_process", True):
            build_image_processor(self.config).save_pretrained(save_directory)
        super().save_pretrained(save_directory, *args, **kwargs)


# cached_file returns None for a file the folder or repo does not have (or cannot be reached for: loading says so)
_IF_PRESENT = {"_raise_exceptions_for_missing_entries": False, "_raise_exceptions_for_connection_errors": False}


def _tensors(module: nn.Module, recurse: bool = False) -> list[torch.Tensor]:
    return [*module.parameters(recurse=recurse), *module.buffers(recurse=recurse)]


def _named_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(), *module.named_buffers()]


def _init_batch_norm(module: _BatchNorm) -> None:
    """torch's BatchNorm initialisation (scale 1, centre 0, fresh running statistics), per tensor."""
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)
    if module.running_mean is not None:
        init.zeros_(module.running_mean)
        init.ones_(module.running_var)
    if module.num_batches_tracked is not None:
        init.zeros_(module.num_batches_tracked)


def _keep_running_stats_on_recompute(module: _BatchNorm, args: tuple) -> None:
    """Forward pre-hook of the encoder's BatchNorm layers under activation checkpointing.

    A layer that runs while autograd runs a backward pass is being recomputed for a checkpointed block (the check
    torch's own `ModuleTracker.is_bw` makes); its forward pass already updated the running statistics, and the
    recomputation would update them a second time. They are saved here and put back when the backward pass ends
    (the recomputation may stop before this layer's forward returns, so not in a forward hook).
    """
    if not (module.training and module.track_running_stats) or torch._C._current_graph_task_id() == -1:
        return
    if module.__dict__.get("_stats_before_recompute") is not None:
        return  # saved already during this backward pass
    stats = [t for t in (module.running_mean, module.running_var, module.num_batches_tracked) if t is not None]
    module._stats_before_recompute = [t.clone() for t in stats]

    def restore() -> None:
        with torch.no_grad():
            for tensor, saved in zip(stats, module.__dict__.pop("_stats_before_recompute"), strict=True):
                tensor.copy_(saved)

    torch.autograd.Variable._execution_engine.queue_callback(restore)


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or tensor.device.type == "meta" or bool(torch.isfinite(tensor).all())


def _check_saved_image_processor(source: str, download: dict) -> None:
    """Refuse a ``preprocessor_config.json`` next to the model whose sizes would make one call allocate gigabytes
    (see `check_image_processor_config`): pipelines and `AutoImageProcessor` would use it as it is."""
    path = cached_file(source, IMAGE_PROCESSOR_NAME, **download, **_IF_PRESENT)
    if path is None:
        return
    try:
        with open(path, encoding="utf-8") as file:
            values = json.load(file)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{source}: {IMAGE_PROCESSOR_NAME} cannot be read ({err}); save the image processor again"
        ) from None
    check_image_processor_config(values, f"{source}: {IMAGE_PROCESSOR_NAME}")


def _check_weight_dtypes(source: str, download: dict) -> None:
    """Refuse weights stored as integers (loading would cast int8 codes to floats without a word); reads only the
    safetensors headers."""
    options = {**download, **_IF_PRESENT}
    files = [cached_file(source, WEIGHTS_NAME, **options)]
    if files[0] is None:
        index = cached_file(source, WEIGHTS_INDEX_NAME, **options)
        if index is None:
            return  # no weights: from_pretrained says so itself
        try:
            with open(index, encoding="utf-8") as file:
                shards = sorted(set(json.load(file)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # from_pretrained reports a broken index itself
        files = [cached_file(source, shard, **options) for shard in shards]
    for path in filter(None, files):
        try:
            with safe_open(path, framework="pt") as weights:
                stored = {key: weights.get_slice(key).get_dtype() for key in weights.keys()}
        except (SafetensorError, OSError):
            return  # from_pretrained reports a corrupt file itself
        for key, dtype in stored.items():
            if dtype not in FLOAT_DTYPES and not key.endswith("num_batches_tracked"):
                raise ValueError(
                    f"{source}: the weight {key} is stored as {dtype}, which loading would cast to floats as they "
                    f"are; SimCLR weights are floating point ({', '.join(FLOAT_DTYPES)}): save the model again"
                )


_RESNET_CHANNELS = (64, 128, 256, 512)  # timm ResNets' stage widths; the 7x7 stem has the first one


def _widen_stem(encoder: nn.Module, width: int, backbone: str) -> None:
    """Give a timm ResNet's 7x7 stem `width` channels (timm fixes it at 64) and rewire the first block's inputs."""
    conv = getattr(encoder, "conv1", None)
    if not isinstance(encoder, ResNet) or not isinstance(conv, nn.Conv2d) or conv.kernel_size != (7, 7):
        raise ValueError(
            f"width_multiplier applies to timm ResNets with a 7x7 stem (resnet50, resnet101, ...), not {backbone!r}"
        )

    def conv_like(old: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
        new = nn.Conv2d(in_channels, out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # as timm initialises convs
        return new

    encoder.conv1 = conv_like(conv, conv.in_channels, width)
    encoder.bn1 = nn.BatchNorm2d(width, eps=encoder.bn1.eps, momentum=encoder.bn1.momentum)
    first = encoder.layer1[0]
    first.conv1 = conv_like(first.conv1, width, first.conv1.out_channels)
    out_channels = first.conv3.out_channels if hasattr(first, "conv3") else first.conv2.out_channels
    if first.downsample is not None:
        first.downsample[0] = conv_like(first.downsample[0], width, out_channels)
    elif width != out_channels:  # timm made no shortcut projection because its 64-channel stem matched
        shortcut = nn.Conv2d(width, out_channels, 1, bias=False)
        nn.init.kaiming_normal_(shortcut.weight, mode="fan_out", nonlinearity="relu")
        first.downsample = nn.Sequential(shortcut, nn.BatchNorm2d(out_channels, eps=encoder.bn1.eps))
    encoder.feature_info[0]["num_chs"] = width


def use_cifar_stem(encoder: nn.Module) -> None:
    """Give a timm ResNet the small-image stem of the paper's CIFAR-10 models (appendix B.9), in place.

    A single 7x7 stride-2 stem convolution becomes a 3x3 stride-1 one; in a deep stem (three 3x3 convolutions) the
    first one runs at stride 1; the max-pool is dropped. Parameter names stay those of the timm model, so the
    state dict has the same keys (the single stem convolution's weight becomes 3x3).
    """
    stem, pool = getattr(encoder, "conv1", None), getattr(encoder, "maxpool", None)
    first = stem[0] if isinstance(stem, nn.Sequential) and len(stem) else stem
    if not isinstance(encoder, ResNet) or not isinstance(first, nn.Conv2d) or not isinstance(pool, nn.MaxPool2d):
        raise ValueError(
            f"cifar_stem needs a timm ResNet with a convolution stem and a max-pool (resnet18, resnet50, ...), "
            f"not {type(encoder).__name__}; set cifar_stem=False or choose such a backbone"
        )
    if first.kernel_size == (3, 3):
        first.stride = (1, 1)
    else:
        conv = nn.Conv2d(first.in_channels, first.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as timm initialises convs
        conv.to(device=first.weight.device, dtype=first.weight.dtype)
        if isinstance(stem, nn.Sequential):
            stem[0] = conv
        else:
            encoder.conv1 = conv
    encoder.maxpool = nn.Identity()
    for info in getattr(encoder, "feature_info", []):  # what timm's feature extraction reports per stage
        info["reduction"] = max(1, info["reduction"] // (2 if info.get("module") == "act1" else 4))


class SimCLRModel(SimCLRPreTrainedModel):
    """SimCLR (Chen et al. 2020): encoder f, projection head g and NT-Xent over two augmented views.

    A checkpoint may also hold a classifier (converted official checkpoints do); this model leaves it out.
    """

    _keys_to_ignore_on_load_unexpected = [r"classifier\..*"]

    def __init__(self, config: SimCLRConfig) -> None:
        super().__init__(config)
        self.encoder = self._create_encoder()
        self.projection_head = self._create_projection_head()
        self.loss_fn = NTXentLoss(temperature=config.temperature)
        self._set_batch_norm_eps()
        self.post_init()

    @property
    def num_features(self) -> int:
        """Size of h, the representation used downstream (2048 for ResNet-50)."""
        return self.encoder.num_features

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_values_2: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SimCLRModelOutput | tuple:
        """Encode `pixel_values` (and `pixel_values_2`, the second view of the same images) and project them.

        With two views the loss is NT-Xent with the config's temperature, averaged over the 2B anchors, each
        scored against its positive and the 2B-2 other views (gathered across processes when distributed).
        `output_hidden_states=True` adds the feature map of every stage (see [`SimCLRModelOutput`]).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        batch_size = pixel_values.shape[0]
        if pixel_values_2 is not None:
            if pixel_values_2.shape != pixel_values.shape:
                raise ValueError(
                    f"pixel_values_2 must have the shape of pixel_values, got {tuple(pixel_values_2.shape)} "
                    f"and {tuple(pixel_values.shape)}"
                )
            # one pass over both views: a single BatchNorm batch and better accelerator utilisation
            pixel_values = torch.cat([pixel_values, pixel_values_2])
        feature_map, pooled, hidden_states = self._encode(pixel_values, output_hidden_states)
        projections = self.projection_head(pooled)
        loss = None
        if pixel_values_2 is not None:
            loss = self.loss_fn(projections[:batch_size], projections[batch_size:])
        output = SimCLRModelOutput(
            loss=loss,
            last_hidden_state=feature_map,
            pooler_output=pooled,
            projections=projections,
            hidden_states=hidden_states,
        )
        return output if return_dict else output.to_tuple()


class SimCLRForImageClassification(SimCLRPreTrainedModel):
    """A SimCLR encoder with a linear classifier, for linear evaluation and fine-tuning.

    The classifier sits on h, or with `config.classifier_projection_layers = k` on the output of the first k layers
    of the projection head (SimCLRv2 fine-tunes from the first one); those layers keep the keys of
    [`SimCLRModel`]'s head. Loading a [`SimCLRModel`] checkpoint carries the encoder (and the kept head layers)
    over and creates a new classifier; the rest of the head is dropped. With `config.freeze_encoder` (or
    `freeze_encoder()`), only the classifier trains and everything below it stays in eval mode so its BatchNorm
    statistics do not move.
    """

    _keys_to_ignore_on_load_unexpected = [r"projection_head\..*"]
    # The Trainer passes `num_items_in_batch` (its count of labels over all gradient-accumulation steps), and takes
    # the loss as already scaled for accumulation (see `classification_loss`).
    accepts_loss_kwargs = True

    def __init__(self, config: SimCLRConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.encoder = self._create_encoder()
        kept = getattr(config, "classifier_projection_layers", 0)
        self.projection_head = None
        in_features = self.encoder.num_features
        if kept:
            self.projection_head = self._create_projection_head(keep_layers=kept)
            in_features = self.projection_head.out_features
        self.classifier = nn.Linear(in_features, config.num_labels)
        self._set_batch_norm_eps()
        self.post_init()
        if config.freeze_encoder:
            self.freeze_encoder()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):
            # the linear-evaluation protocol's classifier initialisation
            init.normal_(module.weight, std=0.01)
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    def classification_loss(
        self, labels: torch.Tensor, logits: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """transformers' loss for `config.problem_type` (cross-entropy for single-label classification, inferred
        from the labels as transformers does), as a mean over this batch's labels or, given `num_items_in_batch`
        (the Trainer's count of labels over all the batches of one optimizer step), as a sum over it: the
        accumulated gradients are then those of the whole step's mean, whatever the batches' sizes."""
        loss = self.loss_function(labels, logits, self.config, num_items_in_batch=num_items_in_batch)
        if num_items_in_batch is not None and self.config.problem_type != "single_label_classification":
            # transformers' MSE and BCE losses take no num_items_in_batch: their mean, rescaled to the same sum
            loss = loss * labels.ne(-100).sum() / num_items_in_batch
        return loss

    def _features(self) -> list[nn.Module]:
        return [m for m in (self.encoder, self.projection_head) if m is not None]

    def freeze_encoder(self, freeze: bool = True) -> None:
        """Stop (or restart) gradient updates below the classifier; frozen, that part also stays in eval mode."""
        self.config.freeze_encoder = freeze
        for module in self._features():
            module.requires_grad_(not freeze)
        self.train(self.training)

    def train(self, mode: bool = True) -> SimCLRForImageClassification:
        super().train(mode)
        if self.config.freeze_encoder:
            for module in self._features():
                module.eval()
        return self

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        """Logits (and the loss with `labels`); `output_hidden_states=True` adds the encoder's stage feature maps as
        [`SimCLRModel`] gives them. With `return_dict=False`: `(loss, logits, hidden_states)`, None ones left out,
        as transformers' `ResNetForImageClassification`."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        _, pooled, hidden_states = self._encode(pixel_values, output_hidden_states)
        if self.projection_head is not None:
            pooled = self.projection_head(pooled)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            loss = self.classification_loss(labels, logits, kwargs.get("num_items_in_batch"))
        output = ImageClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)
        return output if return_dict else output.to_tuple()


class SimCLRBackbone(BackboneMixin, SimCLRPreTrainedModel):
    """The SimCLR encoder as a transformers backbone: the feature maps of the stages in `config.out_features`, for
    dense-prediction models (`UperNetForSemanticSegmentation`, `DetrForObjectDetection`, ... through their
    `backbone_config`).

    It loads the encoder of a [`SimCLRModel`] or [`SimCLRForImageClassification`] checkpoint (the keys `encoder.*`;
    the projection head and classifier are left out). The stages are those of `encoder_stage_names`: a ResNet's are
    `stem`, `stage1` ... `stage4` with the shapes of transformers' `ResNetBackbone`.
    """

    has_attentions = False
    _keys_to_ignore_on_load_unexpected = [r"projection_head\..*", r"classifier\..*"]

    def __init__(self, config: SimCLRConfig) -> None:
        super().__init__(config)
        self.encoder = self._create_encoder()
        self._set_batch_norm_eps()
        # the stages come from the encoder built: a config edited after it named its stages is aligned to them
        self.stage_names = encoder_stage_names(self.encoder)
        self.num_features = [info["num_chs"] for info in self.encoder.feature_info]
        if config.stage_names != self.stage_names:
            config.stage_names = self.stage_names
            config.set_output_features_output_indices(out_features=None, out_indices=config.out_indices)
        config.verify_out_features_out_indices()
        self.post_init()

    def _init_transformers_backbone(self) -> None:
        # BackboneMixin checks the config's stages before the encoder exists; __init__ does it once it is built
        self.num_features = None

    def _init_weights(self, module: nn.Module) -> None:
        # Built directly, the encoder keeps timm's initialisation. Built on the meta device by from_pretrained, every
        # encoder tensor is loaded (a checkpoint missing one is refused) except the non-persistent buffers some timm
        # models compute (relative position indices, ...): timm recomputes those.
        super()._init_weights(module)
        if hasattr(module, "init_non_persistent_buffers"):
            module.init_non_persistent_buffers()

    @can_return_tuple
    @filter_output_hidden_states
    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BackboneOutput | tuple:
        """`feature_maps`: the maps of the stages in `out_features`, in order; with `output_hidden_states=True`,
        `hidden_states` holds every stage's (as [`SimCLRModel`] gives them). With `return_dict=False`:
        `(feature_maps, hidden_states)`, as transformers' `ResNetBackbone`."""
        _, maps = encoder_stages(self.encoder, pixel_values)
        feature_maps = tuple(m for name, m in zip(self.stage_names, maps, strict=True) if name in self.out_features)
        return BackboneOutput(feature_maps=feature_maps, hidden_states=tuple(maps), attentions=None)


# save_pretrained then copies the code and writes `auto_map`, so saved folders load with trust_remote_code=True
# where hf_simclr is not installed.
SimCLRModel.register_for_auto_class("AutoModel")
SimCLRForImageClassification.register_for_auto_class("AutoModelForImageClassification")
SimCLRBackbone.register_for_auto_class("AutoBackbone")

__all__ = [
    "CROP_PCT",
    "SMALL_IMAGE_SIZE",
    "SimCLRBackbone",
    "SimCLRForImageClassification",
    "SimCLRModel",
    "SimCLRModelOutput",
    "SimCLRPreTrainedModel",
    "use_cifar_stem",
    "build_image_processor",
    "encoder_stages",
    "eval_crop_pct",
    "eval_image_size",
]
