"""Typed configuration records: dataclasses that build from plain dicts and reject unknown keys.

``ModelConfig`` (architecture) and ``DataConfig`` (input pipeline) derive from :class:`TypedConfig`; both are
saved as JSON in model directories and read back with :meth:`TypedConfig.from_dict`, which names a misspelt
key in a one-line ``UserError`` instead of letting it pass.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from .errors import UserError


@dataclasses.dataclass
class TypedConfig:
    #: keys that older files may hold and that are read and dropped without an error
    LEGACY_KEYS: ClassVar[tuple[str, ...]] = ()
    #: what the record is called in error messages
    WHAT: ClassVar[str] = "option"

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def check_keys(cls, d: dict) -> None:
        unknown = sorted(set(d) - cls.field_names() - set(cls.LEGACY_KEYS))
        if unknown:
            raise UserError(f"unknown {cls.WHAT}(s): {', '.join(map(str, unknown))} "
                            f"(known: {', '.join(sorted(cls.field_names()))})")

    @classmethod
    def from_dict(cls, d: dict):
        cls.check_keys(d)
        return cls(**{k: v for k, v in d.items() if k not in cls.LEGACY_KEYS})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes):
        """A copy with ``changes`` applied (unknown keys rejected, values validated again)."""
        self.check_keys(changes)
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k not in self.LEGACY_KEYS})
