"""SimCLRConfig: invalid values fail with one line naming the field (the allow-list of backbone_kwargs is in
test_loading_safety.py)."""

from __future__ import annotations

import pytest

from hf_simclr import SimCLRConfig


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"projection_dim": 0}, "projection_dim"),
        ({"projection_layers": 4}, "projection_layers"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": "warm"}, "temperature"),
        ({"image_size": 4}, "image_size"),
        ({"image_std": [0.2, 0.0, 0.2]}, "image_std"),
        ({"backbone_kwargs": {"num_classes": 10}}, "num_classes"),
        ({"cifar_stem": "yes"}, "cifar_stem"),
        ({"cifar_stem": True, "tf_same_stem_pool": True}, "cifar_stem"),
    ],
)
def test_bad_config_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        SimCLRConfig(**overrides)
