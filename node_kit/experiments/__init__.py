"""Runnable experiments: `python -m node_kit.experiments.<name>`.

The commands need the `experiments` extra (`pip install "node_kit[experiments]"`); without
it, importing this package (as `python -m node_kit.experiments.<name>` does first) raises
`ImportError` with that line.
"""

from .._extras import COMMAND_PACKAGES, require_experiments_extra


require_experiments_extra("node_kit.experiments", COMMAND_PACKAGES)

from . import _registry as _registry  # hands itself to nk.load_run (node_kit._runs)
