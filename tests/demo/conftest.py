"""The demo tests use the search tests' model and embedded dataset (tests/search/conftest.py)."""

from search_fixtures import embedded, search_data, search_model  # noqa: F401
