"""What Dagster loads (`workspace.yaml`, `dagster dev`, `dg`): every definition under `defs/`,
found by Dagster's own loader the way `dg scaffold project` lays a project out.

`defs/` holds one folder per domain (renditions, sensors, reruns, reconcile, trash, health) and the
resources; nothing needs listing here when a definition is added there.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
