"""Fixtures the tests share; plain helpers are in helpers.py, the local Hub server in hub_server.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import mount_namespace_available, tiny_config
from hub_server import hub_client, hub_server  # noqa: F401 - local Hub fixtures

import hf_simclr  # noqa: F401 - registers the Auto classes
from hf_simclr import SimCLRModel
from hf_simclr.hub.export import save_model

# markers of transformers' own test files, which tests/test_transformers_common.py imports (TRANSFORMERS_TESTS)
TRANSFORMERS_TEST_MARKERS = (
    "accelerate_tests",
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "torch_compile_test",
    "is_training_test",
    "is_pipeline_test",
    "is_staging_test",
    "is_agent_test",
    "is_fsdp_test",
    "is_tensor_parallel_test",
    "is_expert_parallel_test",
    "order",
)


def pytest_configure(config: pytest.Config) -> None:
    for marker in TRANSFORMERS_TEST_MARKERS:
        config.addinivalue_line("markers", f"{marker}: a marker of transformers' own tests")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # one worker per core: in-process torch on one thread each, as the scripts the tests start run
        torch.set_num_threads(1)


# Tests that share the session's uninterrupted reference pretraining runs (tests/training/conftest.py): one worker
# makes each run once and runs them all, first, since they are the longest group.
SHARED_RUNS_GROUP = "reference-runs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`), a group per test file, as `--dist loadfile` would make, except for the
    tests of the reference runs, which form one group scheduled first. Every worker reorders alike."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            shared = "reference_runs" in getattr(item, "fixturenames", ())
            group = SHARED_RUNS_GROUP if shared else item.nodeid.split("::", 1)[0]
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.get_closest_marker("xdist_group").args[0] != SHARED_RUNS_GROUP)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls run fastest, and identically from run to run, on one thread (the machine may be shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config())
    # move BN statistics off their initial values so a load that ignores buffers would be caught
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64), torch.randn(4, 3, 64, 64))
    return save_model(model.eval(), tmp_path_factory.mktemp("simclr-tiny"))


@pytest.fixture(scope="session")
def mount_namespace() -> None:
    """Tests of full disks and read-only folders mount real small or read-only filesystems in a mount namespace."""
    if not mount_namespace_available():
        pytest.skip("needs `unshare --mount` (root, or unprivileged user namespaces) to mount test filesystems")
