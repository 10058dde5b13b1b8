"""The model card (README.md) of a SimCLR model, through `huggingface_hub.ModelCard`, written from the records of its
folder (:mod:`hf_simclr.hub.records`) so that every writer tells the same story:

* :func:`write_model_card`: a pretraining run's card (the template `model_cards/simclr.md` filled from
  ``config.json``, ``training_args.json``, ``results.json`` and ``eval_results.json``). The run writes it when it
  finishes and each evaluation writes it again; a push renders it once more for the repo
  (:func:`model_card_for_repo`), so that its code snippets, title and model-index name the repo id.
* :func:`update_model_card`: the results section and model-index of any other folder's card (a fine-tuned model, a
  Hub model evaluated locally), from its ``eval_results.json``.
* :func:`timm_model_card`: the short card of the timm-native encoder export's repo.

Only results on a Hub dataset enter the ``model-index`` metadata (its dataset ``type`` must be a dataset id); results
on local or embedded data are shown in the card's table only. Accuracies are shown in % rounded to two decimals.

The templates live in `model_cards/` at the repository root. Installed from a wheel they are found under
`<prefix>/share/hf_simclr/model_cards/` (a `data-files` entry of the package) or inside the package.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from . import records

TEMPLATE_NAME = "simclr.md"
TIMM_TEMPLATE_NAME = "simclr_timm.md"
TASK_TYPE, TASK_NAME = "image-classification", "Image classification (frozen features)"
TAGS = ["simclr", "self-supervised", "image-feature-extraction", "timm"]
RESULTS_HEADING = "## Evaluation results"
# Where hf_simclr comes from when its installed metadata does not say (pyproject.toml's project.urls.Repository).
REPOSITORY_URL = "https://github.com/hf-simclr/hf_simclr"
KNN_MONITOR = "kNN monitor of pretraining: weighted kNN (cosine, temperature 0.07) on the frozen features *h*"
LINEAR_EVAL = "`scripts/linear_eval.py`: weighted kNN and a linear classifier trained on the frozen features *h*"
SEGMENTATION_TASK = "image-segmentation", "Semantic segmentation (UperNet on the encoder, fine-tuned end to end)"
METRIC_TYPES = {"mean_iou": "mean_iou"}  # model-index metric ids other than "accuracy"
NEIGHBOURS_NOTE = (
    "What the features find: held-out images (left) and their nearest training images by cosine similarity of *h*, "
    "those of another class framed in red"
)
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class ResultRow:
    """One row of a card's results table; ``value`` in %. Rows with a ``dataset_id`` also enter the model-index."""

    task: str
    dataset: str
    dataset_id: str | None
    split: str | None
    metric: str  # a key of records.METRIC_NAMES, or any name
    value: float
    task_type: str = TASK_TYPE  # the model-index task id

    @property
    def place(self) -> tuple:
        """What a later result of the same metric replaces."""
        return (self.task, self.dataset_id or self.dataset, self.split, self.metric)


def repository_url() -> str:
    """The source repository of hf_simclr: the installed package's ``Repository`` URL, else :data:`REPOSITORY_URL`."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        entries = metadata("hf-simclr").get_all("Project-URL") or []
    except PackageNotFoundError:
        entries = []
    urls = dict(entry.split(",", 1) for entry in entries if "," in entry)
    return urls.get("Repository", REPOSITORY_URL).strip()


def install_line() -> str:
    """How a card's reader gets hf_simclr (it is not on PyPI)."""
    url = repository_url()
    return f"`pip install git+{url}`, or `pip install -e .` in a clone of {url}"


def percent(fraction: float) -> float:
    """An accuracy in [0, 1] as % rounded as the Hub shows it: 0.7549999952316284 -> 75.5."""
    return round(100 * float(fraction), 2)


def display_number(value: Any) -> Any:
    """Numbers of the training table with at most four significant digits; anything else as given."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return value


def find_template(name: str = TEMPLATE_NAME) -> Path:
    """Path of a card template: source checkout or editable install first, then an installed wheel's copies."""
    candidates = [
        Path(__file__).resolve().parents[2] / "model_cards" / name,
        Path(sys.prefix) / "share" / "hf_simclr" / "model_cards" / name,
        Path(str(resources.files("hf_simclr"))) / "model_cards" / name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"model card template {name!r} not found in {', '.join(str(p.parent) for p in candidates)}; "
        "reinstall hf-simclr or pass template_path="
    )


def eval_results(
    results: Mapping[str, float] | Sequence[Mapping[str, Any]],
    dataset_name: str | None,
    dataset_id: str | None = None,
    split: str | None = None,
    task_name: str = TASK_NAME,
) -> list[EvalResult]:
    """Turn evaluation numbers into `model-index` entries (default task: image classification on frozen features).

    `results` is either `{"knn_top1": 71.2, "linear_top1": 74.0}` or a list of dicts with `metric` and `value` and,
    optionally, `type` (metric id, default "accuracy"), `dataset` (a Hub dataset id), `dataset_name`, `split` and
    `task_type`.
    """
    if isinstance(results, Mapping):
        results = [{"metric": key, "value": value} for key, value in results.items()]
    default_dataset = dataset_id or dataset_name or "custom"
    out = []
    for result in results:
        metric = str(result["metric"])
        out.append(
            EvalResult(
                task_type=result.get("task_type", TASK_TYPE),
                task_name=task_name,
                dataset_type=result.get("dataset", default_dataset),
                dataset_name=result.get("dataset_name", dataset_name or result.get("dataset", default_dataset)),
                dataset_split=result.get("split", split),
                metric_type=result.get("type", "accuracy"),
                metric_name=records.metric_name(metric),
                metric_value=result["value"],
            )
        )
    return out


def model_index(rows: Sequence[ResultRow]) -> list[EvalResult] | None:
    """The model-index entries of ``rows``: those on a Hub dataset (a local dataset has no id to name)."""
    entries = [
        EvalResult(
            task_type=row.task_type,
            task_name=row.task,
            dataset_type=row.dataset_id,
            dataset_name=row.dataset,
            dataset_split=row.split,
            metric_type=METRIC_TYPES.get(row.metric, "accuracy"),
            metric_name=records.metric_name(row.metric),
            metric_value=row.value,
        )
        for row in rows
        if row.dataset_id
    ]
    return entries or None


def results_section(rows: Sequence[ResultRow], notes: Sequence[str] = ()) -> str:
    """The card's "Evaluation results" section: what was evaluated (``notes``) and one table row per result."""
    if not rows:
        return f"{RESULTS_HEADING}\n\nNot evaluated yet.\n"
    lines = [RESULTS_HEADING, ""]
    lines += [f"- {note}" for note in notes]
    unit = "Accuracy and IoU in %:" if any(r.metric in METRIC_TYPES for r in rows) else "Accuracy in %:"
    lines += ["", unit, "", "| Task | Dataset | Split | Metric | Value |", "|---|---|---|---|---|"]
    for r in rows:
        value = f"{r.value:g}" if isinstance(r.value, float) else r.value
        lines.append(f"| {r.task} | {r.dataset} | {r.split or ''} | {records.metric_name(r.metric)} | {value} |")
    return "\n".join(lines) + "\n"


def _rows_from_metrics(
    metrics: Mapping[str, float],
    task: str,
    dataset: str,
    dataset_id: str | None,
    split: str | None,
    task_type: str = TASK_TYPE,
) -> list[ResultRow]:
    return [
        ResultRow(task, dataset, dataset_id, split, key, percent(value), task_type) for key, value in metrics.items()
    ]


def finetune_setting(details: Mapping[str, Any]) -> tuple[str, str]:
    """``(setting, labels used)`` of a fine-tuning entry, e.g. ``("fine-tuned end to end", "10% of the labels")``."""
    setting = "linear classifier on the frozen encoder" if details.get("freeze_encoder") else "fine-tuned end to end"
    return setting, f"{100 * float(details.get('label_fraction', 1.0)):g}% of the labels"


def _entry_rows(entry: Mapping[str, Any]) -> tuple[list[ResultRow], str]:
    """The rows of one ``eval_results.json`` entry and the note that says what produced them."""
    details = entry.get("details") or {}
    metrics = {k: v for k, v in entry["metrics"].items() if isinstance(v, (int, float))}
    if entry.get("evaluation") == "segmentation":
        start = "a randomly initialised copy of " if details.get("random_init") else ""
        note = (
            f"`scripts/finetune_segmentation.py`: UperNet on {start}`{details.get('base_model', 'the model')}`'s "
            f"encoder, fine-tuned on {details.get('num_train', '?')} images"
        )
        task_type, task = SEGMENTATION_TASK
        rows = _rows_from_metrics(
            metrics, task, entry["dataset"], entry.get("dataset_id"), entry.get("split"), task_type
        )
        return rows, note
    if entry.get("evaluation") == "finetune":
        setting, labels = finetune_setting(details)
        task = f"Image classification ({setting}, {labels})"
        note = (
            f"`scripts/finetune.py`: `{details.get('base_model', 'the model')}` {setting} on "
            f"{details.get('num_train', '?')} labelled images ({labels})"
        )
        from ..evaluation.finetune_recipe import describe_recipe  # here: the card needs it for fine-tuning only

        if recipe := describe_recipe(details):
            note += f"; {recipe}"
    elif entry.get("evaluation") == "distill":
        task, note = distillation_row(details)
    else:
        task, note = TASK_NAME, LINEAR_EVAL
    return _rows_from_metrics(metrics, task, entry["dataset"], entry.get("dataset_id"), entry.get("split")), note


def distillation_row(details: Mapping[str, Any]) -> tuple[str, str]:
    """``(task, note)`` of a ``scripts/distill.py`` entry: what the student learnt from, and the teacher's accuracy on
    the same images."""
    teacher = details.get("teacher", "the teacher")
    if details.get("distillation_weight") == 0:
        task = f"Image classification (labels alone, baseline of a distillation from {teacher})"
        how = f"trained on {details.get('num_train', '?')} labelled images alone"
    else:
        task = f"Image classification (distilled from {teacher})"
        images, temperature = details.get("num_train", "?"), details.get("temperature")
        how = f"distilled from `{teacher}` on {images} images at temperature {temperature}"
    note = f"`scripts/distill.py`: `{details.get('student', 'the student')}` {how}"
    if "teacher_top1" in details:
        note += f"; the teacher's top-1 accuracy on the same images: {percent(details['teacher_top1']):g} %"
    if "teacher_kl" in details:
        note += f"; mean KL divergence from the teacher: {details['teacher_kl']:.3f} nats"
        if "teacher_kl_at_start" in details:
            note += f" ({details['teacher_kl_at_start']:.3f} before training)"
    return task, note


def merge_rows(groups: Sequence[tuple[list[ResultRow], str]]) -> tuple[list[ResultRow], list[str]]:
    """Rows in order, a later result replacing an earlier one of the same task, dataset, split and metric; the notes
    of the groups that kept a row."""
    kept: dict[tuple, tuple[ResultRow, str]] = {}
    for rows, note in groups:
        for row in rows:
            kept.pop(row.place, None)
            kept[row.place] = (row, note)
    notes = list(dict.fromkeys(note for _, note in kept.values()))
    return [row for row, _ in kept.values()], notes


def folder_results(folder: str | Path, run: Mapping[str, Any] | None = None) -> tuple[list[ResultRow], list[str]]:
    """The results a folder records: the kNN monitor's final accuracies (``results.json``, or ``run``), then every
    evaluation (``eval_results.json``)."""
    groups = []
    run = run if run is not None else records.finished_run(folder)
    if run is not None:
        knn = {k: v for k, v in knn_results(run).items() if isinstance(v, (int, float))}
        name, dataset_id = run.get("dataset"), run.get("dataset_id")
        if name is None:  # written before results named their dataset
            name, dataset_id = records.dataset_names(_read_json(Path(folder) / records.TRAINING_ARGS).get("dataset"))
        groups.append((_rows_from_metrics(knn, TASK_NAME, name, dataset_id, run.get("eval_split")), KNN_MONITOR))
    groups += [_entry_rows(entry) for entry in records.read_eval_results(folder)]
    rows, notes = merge_rows(groups)
    if rows and (Path(folder) / records.NEIGHBOURS_IMAGE).is_file():  # written by scripts/linear_eval.py
        notes.append(f"{NEIGHBOURS_NOTE}\n\n  ![nearest neighbours]({records.NEIGHBOURS_IMAGE})")
    return rows, notes


def knn_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """The kNN accuracies of the trained encoder among a run's results (not those at random initialisation)."""
    return {k: v for k, v in results.items() if k.startswith("knn_top1") and not k.endswith(records.RANDOM_INIT_SUFFIX)}


def build_model_card(
    repo_id_or_name: str,
    config_dict: Mapping[str, Any],
    training: Mapping[str, Any],
    results: Mapping[str, float] | Sequence[ResultRow],
    dataset_name: str | None,
    *,
    dataset_id: str | None = None,
    eval_split: str | None = None,
    license: str = "apache-2.0",
    feature_dim: int | None = None,
    timm_repo: str | None = None,
    augmentations: str | None = None,
    notes: Sequence[str] = (KNN_MONITOR,),
    warning: str | None = None,
    template_path: str | Path | None = None,
) -> ModelCard:
    """Fill the SimCLR card template.

    Args:
        repo_id_or_name: `org/name` (used in the loading examples and the title) or a local folder.
        config_dict: the model's `config.to_dict()`: backbone, projection head, temperature.
        training: settings shown in the training table, e.g. `{"epochs": 100, "batch size": 512, "optimizer": "LARS"}`.
        results: `{metric key: value in %}` on `dataset_name` (`dataset_id`, `eval_split`), or result rows.
        dataset_name: what the model was pretrained on, as shown (see [`hf_simclr.hub.records.dataset_names`]).
        dataset_id: the Hub id of that dataset (the `datasets` metadata and the model-index); by default
            `dataset_name` if it reads as `org/name`. Without one, results stay out of the model-index.
        feature_dim: size of the representation h (`model.num_features`).
        timm_repo: repo of the timm-native encoder export, if pushed.
        augmentations: the two views' augmentations, e.g. from [`describe_augmentations`].
        notes: what produced the results, one line each.
        warning: a paragraph shown under the title (e.g. from [`baseline_warning`]).
    """
    model_name = repo_id_or_name.rstrip("/").rsplit("/", 1)[-1]
    if dataset_id is None and dataset_name and _HUB_ID.fullmatch(dataset_name):
        dataset_id = dataset_name
    if isinstance(results, Mapping):
        name = dataset_name or "custom"
        rows = [ResultRow(TASK_NAME, name, dataset_id, eval_split, key, value) for key, value in results.items()]
    else:
        rows = list(results)
    datasets = [d for d in dict.fromkeys([dataset_id, *(row.dataset_id for row in rows)]) if d]
    index = model_index(rows)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        tags=list(TAGS),
        datasets=datasets or None,
        license=license,
        model_name=model_name if index else None,  # the model-index's name: without one, no metadata of its own
        eval_results=index,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path or find_template()),
        repo_id=repo_id_or_name,
        model_name=model_name,
        backbone=config_dict.get("backbone", "unknown"),
        projection_dim=config_dict.get("projection_dim"),
        projection_layers=config_dict.get("projection_layers"),
        temperature=config_dict.get("temperature"),
        feature_dim=feature_dim,
        dataset_name=dataset_name,
        timm_repo=timm_repo,
        install=install_line(),
        warning=warning,
        augmentations=augmentations,
        training={key: display_number(value) for key, value in training.items()},
        results_section=results_section(rows, notes),
    )


def describe_augmentations(preset_name: str | None) -> str | None:
    """The two views' augmentations of an augmentation preset, in words (None for an unknown preset)."""
    from ..augment.presets import PRESETS

    preset = PRESETS.get(preset_name or "")
    if preset is None:
        return None
    low, high = preset.crop_scale
    parts = [f"random resized crop to {100 * low:g}-{100 * high:g} % of its area", "horizontal flip"]
    if preset.jitter_p:
        parts.append(f"colour jitter of strength {preset.jitter_strength:g} (p {preset.jitter_p:g})")
    if preset.grayscale_p:
        parts.append(f"grayscale (p {preset.grayscale_p:g})")
    if preset.blur_p:
        parts.append(f"Gaussian blur (p {preset.blur_p:g})")
    return ", ".join(parts)


def learning_rates(args: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """The training table's rows of the learning rate: the base rate given (``--learning_rate``) and the rate applied,
    the base scaled with the global batch B by ``--lr_scaling``; the applied rate alone for a run that does not
    record how it was scaled."""
    applied, base, scaling = results.get("learning_rate"), args.get("learning_rate"), args.get("lr_scaling")
    batch = results.get("global_batch_size")
    if applied is None or base is None or batch is None or scaling not in ("linear", "sqrt", "none"):
        return {"learning rate": applied}
    rule = {"linear": f"{base:g} x B / 256", "sqrt": f"{base:g} x sqrt(B)", "none": "the base, not scaled"}[scaling]
    return {
        "base learning rate (`--learning_rate`)": base,
        "learning rate": f"{applied:.4g} = {rule}, B = {batch} (the global batch; `--lr_scaling {scaling}`)",
    }


def baseline_warning(results: Mapping[str, Any]) -> str | None:
    """A warning when the pretrained encoder's kNN accuracy does not beat the same encoder at random initialisation
    (on any k both were measured at); None when it does, or when no baseline was measured."""
    worse = []
    for key, value in knn_results(results).items():
        baseline = results.get(f"{key}{records.RANDOM_INIT_SUFFIX}")
        if isinstance(value, (int, float)) and isinstance(baseline, (int, float)) and value <= baseline:
            worse.append(f"{records.metric_name(key)} {percent(value):g} % against {percent(baseline):g} %")
    if not worse:
        return None
    return (
        "**Warning:** pretraining did not beat random initialisation: the same encoder with random weights gives "
        f"features as good or better ({'; '.join(worse)}). Train longer or check the recipe (learning rate, "
        "augmentations) before using these features."
    )


def training_table(args: Mapping[str, Any], results: Mapping[str, Any], dataset_name: str) -> dict[str, Any]:
    """The settings the card's "Training details" table shows (empty ones left out), from ``training_args.json``
    and ``results.json``."""
    baseline = results.get(f"knn_top1_k20{records.RANDOM_INIT_SUFFIX}")
    bank, num_train = results.get("knn_bank_images"), results.get("train_images")
    if bank is not None:
        capped = num_train is not None and bank < num_train
        bank = (
            f"{bank:,} of the {num_train:,} training images (a random sample)"
            if capped
            else f"all {bank:,} training images"
        )
    training = {
        "dataset": dataset_name,
        "preset": args.get("preset"),
        "epochs": args.get("epochs") if not args.get("max_steps") else None,
        "steps": results.get("steps"),
        "global batch size": results.get("global_batch_size"),
        "image size": args.get("image_size"),
        "evaluation image size": args.get("eval_image_size"),
        "optimizer": "LARS (momentum 0.9, trust coefficient 0.001)",
        **learning_rates(args, results),
        "weight decay": args.get("weight_decay"),
        "temperature": args.get("temperature"),
        "kNN memory bank": bank,
        "final NT-Xent loss": round(results["loss"], 4) if "loss" in results else None,
        "kNN top-1 (k=20) of the same encoder at random initialisation": (
            f"{percent(baseline):g} %" if baseline is not None else None
        ),
        "settings changed on resume": run_changes_text(results.get("run_changes") or []),
    }
    return {k: v for k, v in training.items() if v}


def run_changes_text(changes: Sequence[Mapping[str, Any]]) -> str | None:
    """``at step 2: dataset a.parquet → b.parquet, seed 42 → 7`` for each resume that changed the run."""
    texts = []
    for entry in changes:
        settings = ", ".join(f"{name} {before} → {after}" for name, (before, after) in entry["changes"].items())
        texts.append(f"at step {entry['step']}: {settings}")
    return "; ".join(texts) or None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def is_pretraining_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished pretraining run, whose card :func:`write_model_card` writes."""
    folder = Path(folder)
    return (folder / records.TRAINING_ARGS).is_file() and records.finished_run(folder) is not None


def write_model_card(
    folder: str | Path,
    repo_id: str | None = None,
    timm_repo: str | None = None,
    *,
    results: Mapping[str, Any] | None = None,
    save: bool = True,
) -> ModelCard:
    """The card of the pretraining run in ``folder``, from its records; saved as ``folder/README.md`` if ``save``.

    ``repo_id`` (default: the run's ``--hub_model_id``, else its ``--output_dir``) is what the snippets load and the
    title names; ``timm_repo`` (default: ``<hub_model_id>-timm`` after ``--timm_export``) the timm export's repo.
    ``results`` stands for ``results.json`` while a finishing run has not written it yet.
    """
    folder = Path(folder)
    args = _read_json(folder / records.TRAINING_ARGS)
    results = results if results is not None else records.finished_run(folder) or {}
    config = _read_json(folder / "config.json")
    if repo_id is None:
        repo_id = args.get("hub_model_id") or str(args.get("output_dir") or folder)
        if timm_repo is None and args.get("timm_export") and args.get("hub_model_id"):
            timm_repo = f"{args['hub_model_id']}-timm"
    name, dataset_id = results.get("dataset"), results.get("dataset_id")
    if name is None:
        name, dataset_id = records.dataset_names(args.get("dataset"))
    rows, notes = folder_results(folder, results)
    card = build_model_card(
        repo_id,
        config,
        training_table(args, results, name),
        rows,
        name,
        dataset_id=dataset_id,
        feature_dim=results.get("feature_dim"),
        timm_repo=timm_repo,
        augmentations=describe_augmentations(args.get("augment")),
        notes=notes,
        warning=baseline_warning(results),
    )
    if save:
        card.save(folder / records.MODEL_CARD)
    return card


def _replace_section(text: str, section: str) -> str:
    # the section runs from its heading to the next level-2 heading (or the end of the card)
    match = re.search(rf"^{re.escape(RESULTS_HEADING)}\s*$.*?(?=^## |\Z)", text, flags=re.M | re.S)
    if match:
        return text[: match.start()] + section + ("\n" if match.end() < len(text) else "") + text[match.end() :]
    citation = re.search(r"^## Citation", text, flags=re.M)
    if citation:
        return text[: citation.start()] + section + "\n" + text[citation.start() :]
    return text.rstrip() + "\n\n" + section


def _load_or_create_card(path: Path, model_name: str, pipeline_tag: str | None) -> ModelCard:
    if path.exists():
        return ModelCard.load(path)
    data = ModelCardData(library_name="transformers", pipeline_tag=pipeline_tag, model_name=model_name)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n# {model_name}\n")


def update_model_card(model_dir: str | Path, *, model_name: str | None = None, pipeline_tag: str | None = None) -> Path:
    """Write the results ``model_dir`` records into its card, creating a card if it has none; returns the card.

    A pretraining run's card is written again whole (:func:`write_model_card`); any other card keeps its text and
    gets a new results section, model-index and ``datasets`` metadata.
    """
    model_dir = Path(model_dir)
    path = model_dir / records.MODEL_CARD
    if is_pretraining_run(model_dir):
        write_model_card(model_dir)
        return path
    rows, notes = folder_results(model_dir)
    card = _load_or_create_card(path, model_name or model_dir.resolve().name, pipeline_tag)
    data = card.data
    data.eval_results = model_index(rows)
    data.model_name = (data.model_name or model_name or model_dir.resolve().name) if data.eval_results else None
    ids = [row.dataset_id for row in rows if row.dataset_id]
    data.datasets = list(dict.fromkeys([*(data.datasets or []), *ids])) or None
    card.text = _replace_section(card.text, results_section(rows, notes))
    model_dir.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


def model_card_for_repo(folder: str | Path, repo_id: str, timm_repo: str | None = None) -> str | None:
    """The card of ``folder`` as pushed to ``repo_id``: snippets, title and model-index name the repo, not the folder.

    A pretraining run's card is rendered again from its records; another card (e.g. of a fine-tuned model) gets the
    repo's name as model-index name and as title where the title named the folder, and the repo id wherever it
    quoted the folder. None if the folder has no card.
    """
    folder = Path(folder)
    if is_pretraining_run(folder):
        return str(write_model_card(folder, repo_id, timm_repo, save=False))
    path = folder / records.MODEL_CARD
    if not path.is_file():
        return None
    card = ModelCard.load(path)
    name = repo_id.rsplit("/", 1)[-1]
    local_names = {card.data.model_name, folder.resolve().name} - {None}
    if card.data.model_name or card.data.eval_results:  # the model-index is named after the model
        card.data.model_name = name
    title = re.search(r"^# (.*)$", card.text, flags=re.M)
    text = card.text
    if title and title[1].strip() in local_names:  # a title of its own (e.g. a converted checkpoint's) is kept
        text = text[: title.start()] + f"# {name}" + text[title.end() :]
    card.text = re.sub(r"(?P<q>[\"'])(?P<path>[^\"'\n]+)(?P=q)", lambda m: _quoted_repo(m, folder, repo_id), text)
    return str(card)


def _quoted_repo(match: re.Match, folder: Path, repo_id: str) -> str:
    """A quoted path to ``folder`` (however spelled) as the quoted repo id; any other quoted text as it was."""
    try:
        same = Path(match["path"]).expanduser().resolve() == folder.resolve()
    except (OSError, RuntimeError, ValueError):
        same = False
    return f"{match['q']}{repo_id}{match['q']}" if same else match[0]


def timm_model_card(timm_repo: str, timm_folder: str | Path, model_repo: str | None = None) -> str:
    """The card of the timm-native export pushed to ``timm_repo``; ``model_repo`` is the SimCLR model's repo."""
    timm_config = _read_json(Path(timm_folder) / "config.json")
    run = records.finished_run(Path(timm_folder).parent) or {}
    dataset_id = run.get("dataset_id")
    card_data = ModelCardData(
        library_name="timm",
        pipeline_tag="image-feature-extraction",
        tags=list(TAGS),
        datasets=[dataset_id] if dataset_id else None,
        license="apache-2.0",
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(find_template(TIMM_TEMPLATE_NAME)),
        repo_id=timm_repo,
        model_name=timm_repo.rsplit("/", 1)[-1],
        model_repo=model_repo,
        architecture=timm_config.get("architecture", "unknown"),
        dataset_name=run.get("dataset"),
    )
    return str(card)


__all__ = [
    "REPOSITORY_URL",
    "TEMPLATE_NAME",
    "ResultRow",
    "baseline_warning",
    "build_model_card",
    "describe_augmentations",
    "eval_results",
    "find_template",
    "folder_results",
    "is_pretraining_run",
    "model_card_for_repo",
    "install_line",
    "learning_rates",
    "percent",
    "repository_url",
    "results_section",
    "timm_model_card",
    "training_table",
    "update_model_card",
    "write_model_card",
]
