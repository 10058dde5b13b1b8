"""The conventions of transformers' vision models, kept by SimCLRModel / SimCLRForImageClassification: every loading
path initialises every tensor, gradient checkpointing, device maps, the Trainer, the image processor's two backends,
torch.compile and torch.export. Where transformers' own ResNet models do the same thing, the test says what they do."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import timm
import torch
from accelerate import infer_auto_device_map
from accelerate.utils import compute_module_sizes
from helpers import tiny_config
from torch.nn.modules.batchnorm import _BatchNorm
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    Trainer,
    TrainingArguments,
)
from transformers import logging as transformers_logging

from hf_simclr import SimCLRForImageClassification, SimCLRModel
from hf_simclr.data import decode_image, load_default_splits
from hf_simclr.modeling_simclr import build_image_processor


def _small(**overrides):
    """resnet18 at 32 px with a BatchNorm head: every kind of tensor (convolutions, BatchNorm scales and running
    statistics, the head's Linear and BatchNorm layers) in a model that builds in milliseconds."""
    kwargs = dict(image_size=32, projection_hidden_dim=16, projection_dim=8, projection_batch_norm=True)
    return tiny_config(**{**kwargs, **overrides})


def _raw(model: torch.nn.Module) -> list[str]:
    """Names of floating-point tensors holding what uninitialised memory holds: NaN, infinities or huge values."""
    return [k for k, v in model.state_dict().items() if v.is_floating_point() and not v.abs().max() < 1e3]


def _encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return model.encoder.state_dict()


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_a_classifier_folder_loads_as_simclr_model_with_an_initialised_head(tmp_path):
    # transformers 5 skips modules without tensors of their own, such as the head's container: the head's layers
    # were left as uninitialised memory (NaN, or 1e19) when the folder had no head
    SimCLRForImageClassification(_small(num_labels=3)).save_pretrained(tmp_path)
    model = SimCLRModel.from_pretrained(tmp_path)
    assert _raw(model) == []
    head = model.projection_head
    assert torch.equal(head[1].running_var, torch.ones(16)) and torch.equal(head[1].weight, torch.ones(16))
    bound = 1 / 512**0.5  # torch's Linear initialisation, as the head is built
    assert 0 < head[0].weight.abs().max() <= bound


@pytest.mark.parametrize("model_class", [SimCLRModel, SimCLRForImageClassification])
def test_every_loading_path_gives_the_encoder_timms_initialisation(model_class):
    config = _small(num_labels=3, classifier_projection_layers=1)
    torch.manual_seed(0)
    reference = _encoder_state(model_class(config))  # built on a real device: timm's own initialisation
    torch.manual_seed(0)
    assert torch.count_nonzero(timm.create_model("resnet18", num_classes=0).layer1[0].bn2.weight) == 0
    torch.manual_seed(0)
    _assert_same(timm.create_model("resnet18", num_classes=0).state_dict(), reference)

    # built on the meta device, then init_weights() (accelerate's init_empty_weights, transformers' common tests)
    with torch.device("meta"):
        meta = model_class(config)
    meta.to_empty(device="cpu")
    torch.manual_seed(0)
    meta.init_weights()
    assert _raw(meta) == []
    _assert_same(_encoder_state(meta), reference)

    # the loading path with nothing to load: every tensor is a missing one
    torch.manual_seed(0)
    loaded = model_class.from_pretrained(None, config=config, state_dict={})
    assert _raw(loaded) == []
    _assert_same(_encoder_state(loaded), reference)
    if model_class is SimCLRForImageClassification:
        assert loaded.classifier.bias.abs().max() == 0 and 0 < loaded.classifier.weight.std() < 0.02
    # weights that lack some of the encoder's are still refused: they are no checkpoint of this backbone
    partial = {"encoder.conv1.weight": reference["conv1.weight"]}
    with pytest.raises(ValueError, match="state_dict has no weights for 119 encoder tensors"):
        model_class.from_pretrained(None, config=config, state_dict=partial)


def _train_steps(model: SimCLRModel, views: torch.Tensor, steps: int = 2) -> list[torch.Tensor]:
    model.train()
    for _ in range(steps):
        model.zero_grad()
        model(pixel_values=views[0], pixel_values_2=views[1]).loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_gradient_checkpointing_gives_the_same_gradients_and_batch_norm_statistics(one_thread):
    torch.manual_seed(0)
    model = SimCLRModel(_small())
    checkpointed = copy.deepcopy(model)
    assert SimCLRModel.supports_gradient_checkpointing and not checkpointed.is_activation_checkpointing
    with warnings.catch_warnings():  # transformers 5 calls it a deprecated alias of activation_checkpointing_enable
        warnings.simplefilter("ignore", FutureWarning)
        checkpointed.gradient_checkpointing_enable()
    assert checkpointed.is_activation_checkpointing and checkpointed.encoder.grad_checkpointing
    block_calls = []
    checkpointed.encoder.layer2[0].register_forward_pre_hook(lambda *_: block_calls.append(1))

    views = torch.randn(2, 4, 3, 32, 32)
    grads = _train_steps(model, views)
    grads_checkpointed = _train_steps(checkpointed, views)
    assert len(block_calls) == 4  # each block ran twice a step: the forward pass and its recomputation
    for grad, grad_checkpointed in zip(grads, grads_checkpointed, strict=True):
        torch.testing.assert_close(grad_checkpointed, grad, rtol=0, atol=1e-6)
    # a recomputed block updates no running statistics: two steps count two batches, as without checkpointing
    _assert_same(checkpointed.state_dict(), model.state_dict())
    assert checkpointed.encoder.layer2[0].bn1.num_batches_tracked == 2

    checkpointed.activation_checkpointing_disable()
    assert not checkpointed.is_activation_checkpointing and not checkpointed.encoder.grad_checkpointing
    assert not any(m._forward_pre_hooks for m in checkpointed.encoder.modules() if isinstance(m, _BatchNorm))


def test_device_map_auto_keeps_every_residual_block_on_one_device(tmp_path, one_thread):
    torch.manual_seed(0)
    model = SimCLRModel(_small()).eval()
    model.save_pretrained(tmp_path / "model")
    size = compute_module_sizes(model)[""]
    limits = {"cpu": int(size * 0.7), "disk": 10 * size}
    blocks = [name for name, m in model.named_modules() if type(m).__name__ in model._no_split_modules]
    assert len(blocks) == 8  # resnet18's BasicBlocks

    def split_blocks(device_map: dict[str, str]) -> list[str]:
        return [key for key in device_map if any(key.startswith(block + ".") for block in blocks)]

    # the limits are tight enough to split a block where nothing forbids it
    assert split_blocks(infer_auto_device_map(model, max_memory=limits, no_split_module_classes=[])) != []
    loaded = SimCLRModel.from_pretrained(
        tmp_path / "model", device_map="auto", max_memory=limits, offload_folder=tmp_path / "offload"
    )
    assert set(loaded.hf_device_map.values()) == {"cpu", "disk"} and split_blocks(loaded.hf_device_map) == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=x).pooler_output, model(pixel_values=x).pooler_output)


class _Images(torch.utils.data.Dataset):
    def __init__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        self.pixel_values, self.labels = pixel_values, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[i], "labels": self.labels[i]}


def _trainer(model, tmp_path, batch_size: int, accumulation: int, data, eval_data=None) -> Trainer:
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=8,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.5,
        lr_scheduler_type="constant",
        optim="sgd",
        weight_decay=0.0,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return Trainer(model=model, args=args, train_dataset=data, eval_dataset=eval_data)


def test_trainer_with_gradient_accumulation_takes_the_step_of_one_large_batch(tmp_path, one_thread):
    # Frozen below the classifier (eval-mode BatchNorm), every sample's gradient is independent of its batch: one
    # step of 2 x 4 images with accumulation must equal one step of 8 images. The Trainer passes num_items_in_batch
    # (8) and takes the loss as already scaled; a per-batch mean would make the step twice as large.
    torch.manual_seed(0)
    model = SimCLRForImageClassification(_small(backbone="test_resnet", num_labels=3, freeze_encoder=True))
    data = _Images(torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    transformers_logging.set_verbosity_error()
    steps = {}
    for batch_size, accumulation in ((8, 1), (4, 2)):
        trainer = _trainer(copy.deepcopy(model), tmp_path / str(accumulation), batch_size, accumulation, data, data)
        assert trainer.label_names == ["labels"] and trainer.model_accepts_loss_kwargs
        trainer.train()
        steps[accumulation] = trainer.model.classifier.weight.detach() - model.classifier.weight
    assert steps[1].abs().max() > 1e-3
    torch.testing.assert_close(steps[2], steps[1], rtol=1e-5, atol=1e-7)
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["eval_loss"])


def test_classification_loss_over_accumulated_batches_is_the_mean_of_the_whole_step():
    model = SimCLRForImageClassification(_small(backbone="test_resnet", num_labels=2))
    logits = torch.randn(6, 2)
    single = torch.tensor([0, 1, 1, 0, 1, -100])  # -100: ignored, as transformers' losses do
    halves = sum(model.classification_loss(single[s], logits[s], num_items_in_batch=5) for s in (slice(3), slice(3, 6)))
    torch.testing.assert_close(halves, torch.nn.functional.cross_entropy(logits, single))
    model.config.problem_type = "multi_label_classification"
    multi = torch.randint(0, 2, (6, 2)).float()
    halves = sum(model.classification_loss(multi[s], logits[s], num_items_in_batch=12) for s in (slice(2), slice(2, 6)))
    torch.testing.assert_close(halves, torch.nn.functional.binary_cross_entropy_with_logits(logits, multi))


def test_run_image_classification_calls_fine_tune_a_simclr_checkpoint(tiny_model_dir, tmp_path, one_thread):
    """What transformers' examples/pytorch/image-classification/run_image_classification.py does with a model: the
    same calls, on real images (the embedded data)."""
    from torchvision.transforms import (
        CenterCrop,
        Compose,
        Normalize,
        RandomHorizontalFlip,
        RandomResizedCrop,
        Resize,
        ToTensor,
    )

    names = ["T-shirt/top", "Trouser", "Pullover"]
    label2id, id2label = {name: str(i) for i, name in enumerate(names)}, {str(i): name for i, name in enumerate(names)}
    config = AutoConfig.from_pretrained(
        tiny_model_dir,
        num_labels=len(names),
        label2id=label2id,
        id2label=id2label,
        finetuning_task="image-classification",
    )
    model = AutoModelForImageClassification.from_pretrained(tiny_model_dir, config=config, ignore_mismatched_sizes=True)
    image_processor = AutoImageProcessor.from_pretrained(tiny_model_dir)
    if "shortest_edge" in image_processor.size:
        size = image_processor.size["shortest_edge"]
    else:
        size = (image_processor.size["height"], image_processor.size["width"])
    normalize = Normalize(mean=image_processor.image_mean, std=image_processor.image_std)
    train_transforms = Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(), normalize])
    val_transforms = Compose([Resize(size), CenterCrop(size), ToTensor(), normalize])

    rows = load_default_splits()["train"].filter(lambda row: row["label"] < 3).select(range(12))
    images = [decode_image(row["image"]) for row in rows]
    train = _Images(torch.stack([train_transforms(image) for image in images]), torch.tensor(rows["label"]))
    val = _Images(torch.stack([val_transforms(image) for image in images]), torch.tensor(rows["label"]))

    def collate_fn(examples):
        return {
            "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
            "labels": torch.tensor([int(example["labels"]) for example in examples]),
        }

    transformers_logging.set_verbosity_error()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=2,
        remove_unused_columns=False,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=val,
        processing_class=image_processor,
        data_collator=collate_fn,
    )
    assert trainer.train().training_loss > 0
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["eval_loss"])
    trainer.save_model(str(tmp_path / "fine-tuned"))
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "fine-tuned")
    assert isinstance(reloaded, SimCLRForImageClassification) and reloaded.config.id2label[1] == "Trouser"


def test_image_processor_backends_and_the_evaluation_preprocessing_agree(tiny_model_dir):
    images = [decode_image(row["image"]) for row in load_default_splits()["test"].select(range(16))]
    config = AutoConfig.from_pretrained(tiny_model_dir)
    evaluation = build_image_processor(config)(images, return_tensors="pt")["pixel_values"]
    torchvision_backend = AutoImageProcessor.from_pretrained(tiny_model_dir, backend="torchvision")
    pil_backend = AutoImageProcessor.from_pretrained(tiny_model_dir, backend="pil")
    default = AutoImageProcessor.from_pretrained(tiny_model_dir)
    assert type(default) is type(torchvision_backend) and type(pil_backend) is not type(torchvision_backend)
    # pipelines and AutoImageProcessor give exactly the tensors the project's evaluation uses
    torch.testing.assert_close(default(images, return_tensors="pt")["pixel_values"], evaluation, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        torchvision_backend(images, return_tensors="pt")["pixel_values"], evaluation, rtol=0, atol=1e-6
    )
    # PIL and torchvision resample in 8 bits with their own rounding: a few values differ by one intensity level
    # (the 28 px images are resized to 73 px here), the others agree; an image needing no resampling agrees exactly
    pil = torch.as_tensor(pil_backend(images, return_tensors="pt")["pixel_values"])
    one_level = 1 / 255 / min(config.image_std)
    assert (pil - evaluation).abs().max() <= one_level + 1e-6
    assert ((pil - evaluation).abs() > 1e-5).float().mean() < 0.01
    side = pil_backend.size["shortest_edge"]
    exact = [image.resize((side, side)) for image in images[:4]]
    torch.testing.assert_close(
        torch.as_tensor(pil_backend(exact, return_tensors="pt")["pixel_values"]),
        build_image_processor(config)(exact, return_tensors="pt")["pixel_values"],
        rtol=0,
        atol=1e-5,
    )


def test_torch_export_and_compile_fullgraph_give_the_eager_outputs(one_thread):
    torch.manual_seed(0)
    model = SimCLRModel(_small(backbone="test_resnet")).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        eager = model(pixel_values=x)
    exported = torch.export.export(model, (), {"pixel_values": x}).module()
    with torch.no_grad():
        out = exported(pixel_values=x)
    for name in ("last_hidden_state", "pooler_output", "projections"):
        torch.testing.assert_close(out[name], eager[name], rtol=0, atol=1e-5)
    # fullgraph: no graph break anywhere in the forward pass. AOTAutograd without code generation keeps this test
    # cheap; the default inductor backend compiles the same graph (about a minute on two CPU cores).
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        out = compiled(pixel_values=x)
    for name in ("last_hidden_state", "pooler_output", "projections"):
        torch.testing.assert_close(out[name], eager[name], rtol=0, atol=1e-5)
