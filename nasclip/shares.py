"""The shares as the running parts see them: names, roots, and the mapping between paths.

The catalog stores share-relative paths; results, logs and ``--like`` speak
absolute ones. Every translation between the two goes through ``Shares``, so
there is one answer to "which share is this path in" and one spelling of a
result's path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Union

if TYPE_CHECKING:
    from .config import ShareConfig

UNKNOWN_ROOT = Path("?")  # a row of a share no longer configured (shown, never opened)


@dataclass(frozen=True)
class Shares:
    """Share name -> root folder, read-only; replaced as a whole when the config is reloaded."""

    roots: Mapping[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", MappingProxyType({name: Path(root) for name, root in self.roots.items()}))

    @classmethod
    def of(cls, shares: Union["Shares", Mapping[str, Path], Iterable["ShareConfig"]]) -> "Shares":
        """From the config's shares, a name -> root mapping, or a Shares (returned as it is)."""
        if isinstance(shares, Shares):
            return shares
        if isinstance(shares, Mapping):
            return cls(dict(shares))
        return cls({s.name: s.path for s in shares})

    def __contains__(self, name: object) -> bool:
        return name in self.roots

    def __iter__(self) -> Iterator[str]:
        return iter(self.roots)

    def __len__(self) -> int:
        return len(self.roots)

    def items(self) -> Iterable[tuple[str, Path]]:
        return self.roots.items()

    def root(self, name: str) -> Path | None:
        return self.roots.get(name)

    def shown(self, name: str, relpath: str) -> str:
        """The absolute path of a share-relative one, for people (``?/...`` for a share no longer configured)."""
        return str(self.roots.get(name, UNKNOWN_ROOT) / relpath)

    def locate(self, path: Path) -> tuple[str, str] | None:
        """(share, relpath) of an absolute path inside a share (not a root itself), or None."""
        for name, root in self.roots.items():
            try:
                rel = path.relative_to(root)
            except ValueError:
                continue
            if rel.parts:
                return name, rel.as_posix()
        return None

    def spelled(self, folder: str) -> str:
        """folder as results spell it: below a share root as configured.

        A client's working directory comes back from getcwd() with symlinks
        resolved (/volume1/photo/2023) while the share may be configured
        through a link (/var/services/photo): such a folder is mapped onto
        the configured root, so --in . finds what it should.
        """
        folder = os.path.normpath(folder)
        roots = [str(r) for r in self.roots.values()]
        if any(folder == r or folder.startswith(r + "/") or r.startswith(folder + "/") for r in roots):
            return folder
        real = os.path.realpath(folder)
        for root in roots:
            real_root = os.path.realpath(root)
            if real == real_root or real.startswith(real_root + "/"):
                return root + real[len(real_root):]
        return folder
