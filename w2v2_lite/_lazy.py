"""Lazy exports: a package names its public objects, and each module loads on first use."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports `exports[name]` when `name` is first read.

    exports maps a public name to the submodule (relative to `package`) that defines it;
    the loaded object is cached in `namespace`, the package's globals().
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
