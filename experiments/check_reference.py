"""Check that short runs of the commands still give the numbers of a reference commit.

    python experiments/check_reference.py             # compare with experiments/reference.json
    python experiments/check_reference.py --record    # write it from the code on PYTHONPATH

The work is `node_kit.experiments._reference_check` (its docstring says what is compared);
the runs are the `reference` of each command in `node_kit/experiments/_registry.py`.
"""

import sys

from node_kit.experiments._reference_check import main

if __name__ == "__main__":
    sys.exit(main())
