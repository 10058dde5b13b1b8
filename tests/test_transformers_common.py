"""transformers' own model tests (``ModelTesterMixin`` of the installed version's ``tests/test_modeling_common.py``)
run on SimCLRModel and SimCLRForImageClassification, as transformers runs them on its ResNet models.

transformers installs no test files, so this module runs where ``TRANSFORMERS_TESTS`` names the ``tests/`` folder of
the installed version's source distribution (and ``parameterized`` is installed); elsewhere it is skipped.
docs/transformers.md gives the commands. The tests that do not apply to SimCLR are skipped with the reason.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import os
import sys
import types
import unittest
from pathlib import Path

import pytest
import torch
from transformers.testing_utils import torch_device

from hf_simclr import SimCLRConfig, SimCLRForImageClassification, SimCLRModel

TESTS = os.environ.get("TRANSFORMERS_TESTS")
if not TESTS or not (Path(TESTS) / "test_modeling_common.py").is_file():
    pytest.skip("TRANSFORMERS_TESTS names no transformers tests/ folder", allow_module_level=True)
pytest.importorskip("parameterized")

_PACKAGE = "transformers_common_tests"


def _load_model_tester_mixin() -> types.ModuleType:
    """``test_modeling_common`` as a module of a package over ``TESTS``. It imports two mixins from test folders the
    source distribution does not have (exporters, generation); for a model that neither exports through
    ``transformers.exporters`` nor generates, empty classes stand in for them."""
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [TESTS]
    sys.modules[_PACKAGE] = package
    for folder, module, mixin in (
        ("exporters", "test_export", "ExportTesterMixin"),
        ("generation", "test_utils", "GenerationTesterMixin"),
    ):
        parent = types.ModuleType(f"{_PACKAGE}.{folder}")
        parent.__path__ = []
        stand_in = types.ModuleType(f"{_PACKAGE}.{folder}.{module}")
        setattr(stand_in, mixin, type(mixin, (), {}))
        sys.modules.update({parent.__name__: parent, stand_in.__name__: stand_in})
    name = f"{_PACKAGE}.test_modeling_common"
    spec = importlib.util.spec_from_file_location(name, Path(TESTS) / "test_modeling_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


common = _load_model_tester_mixin()
_HIDDEN_STATES = "output_hidden_states" in inspect.signature(SimCLRModel.forward).parameters
_TIMM_CHECKPOINTING = (
    "transformers' checkpointing tests drive its GradientCheckpointingLayer; SimCLR's encoder checkpoints its blocks "
    "through timm's set_grad_checkpointing (test_transformers_conventions compares the gradients and BatchNorm "
    "statistics with and without)"
)


class SimCLRModelTester:
    def __init__(self, parent: unittest.TestCase, batch_size: int = 3, image_size: int = 32, num_labels: int = 3):
        self.parent, self.batch_size, self.image_size, self.num_labels = parent, batch_size, image_size, num_labels
        self.is_training = True
        self.num_stages = 4  # timm's test_resnet, as transformers' ResNet testers

    def get_config(self) -> SimCLRConfig:
        return SimCLRConfig(
            backbone="test_resnet",
            image_size=self.image_size,
            projection_hidden_dim=16,
            projection_dim=8,
            num_labels=self.num_labels,
        )

    def prepare_config_and_inputs_for_common(self) -> tuple[SimCLRConfig, dict[str, torch.Tensor]]:
        pixel_values = common.floats_tensor([self.batch_size, 3, self.image_size, self.image_size])
        return self.get_config(), {"pixel_values": pixel_values}


class SimCLRModelTest(common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (SimCLRModel, SimCLRForImageClassification)
    pipeline_model_mapping = {}
    has_attentions = False
    test_resize_embeddings = False
    # the configuration file carries no copyright year, which transformers reads as "added before 2023"
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self) -> None:
        self.model_tester = SimCLRModelTester(self)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """With ``return_labels``, what makes each class return a loss: labels for the classifier, the second view
        (the first one mirrored) for SimCLRModel. Deterministic: the tests compare two calls."""
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels and model_class is SimCLRForImageClassification:
            inputs_dict["labels"] = torch.arange(self.model_tester.batch_size) % self.model_tester.num_labels
        if return_labels and model_class is SimCLRModel:
            inputs_dict["pixel_values_2"] = inputs_dict["pixel_values"].flip(-1)
        return inputs_dict

    @unittest.skip(reason="a CNN has no token embeddings (transformers' ResNet tests skip it too)")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(
        reason="from_pretrained refuses, on purpose, a checkpoint without the encoder's weights and weights stored as "
        "integers; this test loads a file holding one int64 tensor"
    )
    def test_model_weights_reload_no_missing_tied_weights(self):
        pass

    @unittest.skip(
        reason="a built model keeps the random values its encoder (timm's initialisation) and head were built with, "
        "which the test cannot seed (it exempts transformers' own TimmWrapper models for that reason); "
        "test_transformers_conventions checks that every loading path gives timm's initialisation for the same seed"
    )
    def test_can_init_all_missing_weights(self):
        pass

    @unittest.skip(reason=_TIMM_CHECKPOINTING)
    def test_gradient_checkpointing_enable_disable(self):
        pass

    @unittest.skip(reason=_TIMM_CHECKPOINTING)
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason=_TIMM_CHECKPOINTING)
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(reason=_TIMM_CHECKPOINTING)
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    @unittest.skipUnless(_HIDDEN_STATES, "the models' forward takes no output_hidden_states")
    def test_hidden_states_output(self):
        """As transformers' own ResNet tests check it (tests/models/resnet/test_modeling_resnet.py, which replaces the
        common test written for token sequences): the stem's map at a quarter of the input and one map per stage,
        asked for by the argument or by the config, from both classes."""
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            for by_config in (False, True):
                config = copy.deepcopy(config)
                inputs = dict(inputs_dict)
                if by_config:
                    config.output_hidden_states = True
                else:
                    inputs["output_hidden_states"] = True
                model = model_class(config).to(torch_device).eval()
                with torch.no_grad():
                    hidden_states = model(**self._prepare_for_class(inputs, model_class)).hidden_states
                self.assertEqual(len(hidden_states), self.model_tester.num_stages + 1)
                quarter = self.model_tester.image_size // 4
                self.assertListEqual(list(hidden_states[0].shape[-2:]), [quarter, quarter])

    @unittest.skipUnless(_HIDDEN_STATES, "the models' forward takes no output_hidden_states")
    def test_retain_grad_hidden_states_attentions(self):
        super().test_retain_grad_hidden_states_attentions()
