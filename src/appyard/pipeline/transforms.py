"""Protection transforms: each is a control id (``protect.*``) and a function in -> out.

The processing pipeline applies the enabled ones in catalog order. Each reads its input file
and writes a new output file; none modifies its input, so a stage is safe to run twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

Transform = Callable[[Path, Path], None]


def _zipalign(src: Path, dst: Path) -> None:
    from appyard.signing.align import align_apk

    align_apk(src, dst)


TRANSFORMS: dict[str, tuple[tuple[str, ...], Transform]] = {
    # control id: (kinds it applies to, function)
    "protect.zipalign": (("apk",), _zipalign),
}


def apply(control_ids: list[str], kind: str, src: Path, workdir: Path) -> Path:
    """Apply the enabled transforms for ``kind``; returns the path of the final file."""
    current = src
    for index, control_id in enumerate(control_ids):
        entry = TRANSFORMS.get(control_id)
        if entry is None or kind not in entry[0]:
            continue
        out = workdir / f"step{index}-{control_id}.{kind}"
        entry[1](current, out)
        current = out
    if current == src:
        out = workdir / f"output.{kind}"
        shutil.copyfile(src, out)
        current = out
    return current
