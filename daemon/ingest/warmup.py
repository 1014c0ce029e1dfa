"""What a unit imports on first use, imported while a watching daemon waits for data.

The unit's heavier libraries are imported when first used (scipy.ndimage for the fiducial's
spline shift, scikit-image's phase correlation: ~0.3 s of a core together), so `status`,
`ingest`'s start and the page do without them. A watching daemon is idle until the
microscope finishes a dataset; importing them then takes that cost out of the first unit
after a cold start, whose latency the lab sees. Only when idle: never beside a unit, so it
takes no core from one. A process that never idles (`ingest`, a daemon started on a
backlog) imports them in a thread beside its first units instead (`UnitConverter`), so no
worker holds up its unit for them.

Then a daemon of one experiment freezes what start-up made (modules, classes, functions:
~80,000 objects, none of them ever garbage) out of the cyclic collector's sight (`gc.freeze`,
once a process): every full collection walked them all, a pause of ~18 ms of every thread
(the page's answers, the workers) that started-up objects alone cost, however long the run.
Not under `watch --root`: there experiments' services are opened and closed as runs come and
go, and a service frozen while open (it holds reference cycles) would never be freed.
"""

from __future__ import annotations

import gc
import importlib

# (module, name) of each `from module import name` a unit makes when first used
# (daemon/pixels/registration.py)
UNIT_IMPORTS: tuple[tuple[str, str], ...] = (
    ("scipy", "ndimage"),
    ("skimage.registration", "phase_cross_correlation"),
)


def warm_up(freeze: bool) -> list[str]:
    """Import `UNIT_IMPORTS` (scikit-image loads a name on first access, hence the getattr),
    then with `freeze` freeze what start-up made, if nothing is frozen yet; the packages
    imported, for the log."""
    for module, name in UNIT_IMPORTS:
        getattr(importlib.import_module(module), name)
    if freeze and not gc.get_freeze_count():
        gc.collect()  # what start-up left as garbage is freed, not frozen
        gc.freeze()
    return [module for module, _name in UNIT_IMPORTS]
