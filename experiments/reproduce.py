"""Re-run committed results with the current code and say which ones it reproduces.

    python experiments/reproduce.py                          # the table from reproduce.json
    python experiments/reproduce.py --run cnf/8gaussians     # re-run one, compare, record
    python experiments/reproduce.py --all --max-minutes 5    # every run expected under 5 min

The work is `node_kit.experiments._reproduce` (its docstring says how runs are compared,
pinned to cores and recorded); the committed runs are those the command registry
(`node_kit/experiments/_registry.py`) lists.
"""

import sys

from node_kit.experiments._reproduce import main

if __name__ == "__main__":
    sys.exit(main())
