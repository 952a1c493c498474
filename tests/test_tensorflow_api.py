"""PixelLib's TensorFlow modules: importing one says what to use instead, and what it names
exists."""
from __future__ import annotations

import importlib
import re

import pytest

# module, a name PixelLib's scripts imported from it
TENSORFLOW_MODULES = [
    ("pixellib.instance", "instance_segmentation"),
    ("pixellib.semantic", "semantic_segmentation"),
    ("pixellib.custom_train", "instance_custom_training"),
]


@pytest.mark.parametrize("module, name", TENSORFLOW_MODULES)
def test_importing_a_tensorflow_module_says_what_to_use_instead(module, name):
    for _ in range(2):  # a second import (the module is not left half-imported) says it again
        with pytest.raises(ImportError) as info:
            exec(f"from {module} import {name}", {})
        assert info.value.name == module
        message = str(info.value)
        assert message.startswith(f"{module} is PixelLib's TensorFlow")
        assert "does not include" in message


@pytest.mark.parametrize("module, _", TENSORFLOW_MODULES)
def test_what_the_message_names_can_be_imported(module, _):
    with pytest.raises(ImportError) as info:
        importlib.import_module(module)
    named = re.findall(r"'from (\S+) import (\w+)'", str(info.value))
    if module != "pixellib.custom_train":
        assert named
    for where, what in named:
        assert getattr(importlib.import_module(where), what)
