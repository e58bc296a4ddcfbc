"""Name -> class registries whose classes are imported only when asked for.

Used for methods (``model.name``, :mod:`lightning_modules`) and DataModules (``data.name``,
:mod:`datamodules`), so that loading one method never imports the others.
"""
from __future__ import annotations

import importlib


class Registry:
    def __init__(self, entries: dict[str, str]):
        """``entries``: name -> ``"package.module:Class"``."""
        self.entries = dict(entries)

    def __iter__(self):
        return iter(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def load(self, name: str) -> type:
        module, cls = self.entries[name].split(":")
        return getattr(importlib.import_module(module), cls)

