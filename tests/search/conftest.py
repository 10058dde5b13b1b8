"""The search tests' fixtures (shared with the demo tests): tests/search_fixtures.py."""

from search_fixtures import embedded, search_data, search_model  # noqa: F401
