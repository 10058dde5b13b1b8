"""The files of a Hub Space that demonstrates an encoder and a dataset it embedded, generated from the templates in
``templates/``, and their push.

``app.py`` is the template as it is with the model and index ids filled in; ``requirements.txt`` pins what it imports
to the versions installed here (where it was tested), and Gradio to ``sdk_version`` in the README's metadata, which
also names the model and the datasets (the Hub links the Space from their pages).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tempfile
from pathlib import Path
from string import Template
from types import ModuleType

from huggingface_hub import SpaceCardData

from ..errors import UsageError
from ..search.embeddings import locate_embeddings, read_info

TEMPLATES = Path(__file__).resolve().parent / "templates"
APP_TEMPLATE = TEMPLATES / "app.py"
GRADIO_FALLBACK = "6.31.0"  # the Gradio the app was written against, when Gradio is not installed here
K = 8


def load_app() -> ModuleType:
    """The app template as a module (its ``build_demo`` builds the Gradio app); imports Gradio."""
    spec = importlib.util.spec_from_file_location("hf_simclr_demo_app", APP_TEMPLATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package).split("+")[0]  # torch's "2.5.1+cpu" is "2.5.1" on PyPI
    except importlib.metadata.PackageNotFoundError:
        return None


def requirements() -> str:
    """``requirements.txt`` of the Space: each package of the template pinned to the version installed here."""
    lines = []
    for line in (TEMPLATES / "requirements.txt").read_text().splitlines():
        name = line.strip()
        if not name or name.startswith("#"):
            lines.append(line)
            continue
        version = _version(name)
        lines.append(f"{name}=={version}" if version else name)
    return "\n".join(lines) + "\n"


def space_files(space_id: str, model_id: str, index_id: str, info: dict) -> dict[str, str]:
    """``{path: text}`` of the Space ``space_id`` over the model repo ``model_id`` and the embedded dataset repo
    ``index_id`` (whose ``embedding_info.json`` is ``info``)."""
    app = APP_TEMPLATE.read_text().replace("__MODEL_ID__", model_id).replace("__INDEX_ID__", index_id)
    gradio = _version("gradio") or GRADIO_FALLBACK
    title = f"Similar images: {model_id.rsplit('/', 1)[-1]}"
    metadata = SpaceCardData(
        title=title,
        emoji="🔎",
        colorFrom="indigo",
        colorTo="green",
        sdk="gradio",
        sdk_version=gradio,
        app_file="app.py",
        pinned=False,
        license="apache-2.0",
        models=[model_id],
        datasets=[d for d in (index_id, info.get("dataset_id")) if d],
        tags=["simclr", "image-feature-extraction", "image-similarity", "faiss"],
        short_description="Nearest neighbours of an image by a self-supervised encoder",
    )
    readme = Template((TEMPLATES / "README.md").read_text()).substitute(
        metadata=metadata.to_yaml(),
        title=title,
        k=K,
        num_images=f"{info.get('num_embedded', 0):,}",
        dataset_name=info.get("dataset_name", "the dataset"),
        model_id=model_id,
        index_id=index_id,
        gradio_version=gradio,
    )
    return {"app.py": app, "requirements.txt": requirements(), "README.md": readme}


def push_space(space_id: str, model_id: str, index_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Create or update the Gradio Space ``space_id`` in one commit; returns the commit URL.

    ``index_id`` must be a Hub dataset repo (``scripts/embed_dataset.py --push_to_hub``): the Space loads it from
    there. A failed upload is a :class:`hf_simclr.errors.HubPushError` naming the command that retries it.
    """
    from ..hub.push import _upload, check_repo_id

    for repo in (space_id, model_id, index_id):
        check_repo_id(repo)
    if Path(index_id).exists():
        raise UsageError(
            f"--space_index {index_id} is a local folder: push it first (scripts/embed_dataset.py ... --push_to_hub "
            "org/name) and pass its Hub id"
        )
    info = read_info(locate_embeddings(index_id))
    if not info.get("dataset_id"):
        print(
            f"warning: {index_id} was embedded from local images ({info.get('dataset_name')}): the Space lists the "
            "neighbours without their pictures unless its IMAGES_DATASET variable names a Hub dataset holding them"
        )
    retry = f"python scripts/push_to_hub.py ... --space {space_id} --space_index {index_id}"
    with tempfile.TemporaryDirectory() as folder:
        for name, text in space_files(space_id, model_id, index_id, info).items():
            (Path(folder) / name).write_text(text)
        message = f"Demo of {model_id} on {index_id}"
        return _upload(Path(folder), space_id, private, None, message, token, retry, {}, "space", space_sdk="gradio")


__all__ = ["APP_TEMPLATE", "load_app", "push_space", "requirements", "space_files"]
