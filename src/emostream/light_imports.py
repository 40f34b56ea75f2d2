"""TensorFlow's protocol buffers without TensorFlow, for processes that only speak its wire formats.

The classifier needs TensorFlow's tensor protos (TF Serving's API is built on them) and MediaPipe
imports TensorFlow if it can, for documentation decorators only. Importing the real package costs
such a process some 650 MB and seconds of start-up; its proto modules alone cost a few MB.
"""

from __future__ import annotations

import importlib.util
import sys
import types

_standalone = False


def mark_standalone() -> None:
    """The CLI calls this when a command runs as its own process (not as a call from other code)."""
    global _standalone
    _standalone = True


def tensorflow_protos_only_if_standalone() -> bool:
    """`tensorflow_protos_only()` in a command's own process; never inside a caller that may need TensorFlow."""
    return _standalone and tensorflow_protos_only()


def tensorflow_protos_only() -> bool:
    """Let `tensorflow.*` submodules load without TensorFlow's own `__init__` (its runtime).

    For a process that will never run TensorFlow: afterwards `import tensorflow` gives an empty
    package. True if installed here; False if TensorFlow is already loaded or not installed.
    """
    if "tensorflow" in sys.modules:
        return False
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return False
    package = types.ModuleType("tensorflow", "TensorFlow's modules without its runtime (emostream.light_imports)")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["tensorflow"] = package
    return True
