"""A Gradio demo of an encoder and a dataset it embedded: the app (``templates/app.py``, standalone: it needs no
hf_simclr), the files of a Hub Space generated from it (:mod:`.space`), and ``python -m hf_simclr.demo`` to run the
same app locally (:mod:`.__main__`). Gradio is imported only by the app itself."""

from ..lazy_imports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".space": ["APP_TEMPLATE", "load_app", "push_space", "space_files"],
    },
)
