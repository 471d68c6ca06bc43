"""Print the Markdown that README.md and docs/ quote from committed results, and keep it current.

    python experiments/tables.py NAME      # print one block (the names: run it without one)
    python experiments/tables.py --write   # rewrite every marked block of README.md and docs/
    python experiments/tables.py --check   # exit 1, naming each file and block that differs

The work is `node_kit.experiments._tables` (its docstring shows the marker comments); the
tables are those of the registered commands (`Command.tables`, next to each command) and
of the measuring scripts here (`_tables.REPORTS`). After new results are committed, run
`python experiments/tables.py --write`.
"""

import sys

from node_kit.experiments._tables import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
