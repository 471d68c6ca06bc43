"""mkdocs hooks: the commands' pages in the nav, and the committed result pictures, which
live outside docs/.

`on_config` puts every registered command's page (`COMMAND.docs`) in the nav: a page that
mkdocs.yml does not name is added under "Commands", so a new command's page needs no edit
of mkdocs.yml.

The pages link a picture by its path from docs/ in the repository,
`../experiments/results/<run>/<picture>.png`, so that the links also work where GitHub
shows the Markdown. mkdocs only serves files inside docs/: `on_files` adds every PNG under
experiments/results/ to the site as `experiments/results/...` (no copy in docs/), and
`on_page_markdown` drops one `../` from those links, which is where they then sit
relative to the page.
"""

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
LINK = re.compile(r"(\]\(|src=\")\.\./((?:\.\./)*experiments/results/)")


def on_config(config):
    from node_kit.experiments._registry import nav_with_commands

    config["nav"] = nav_with_commands(config["nav"])
    return config


def on_files(files, config):
    for path in sorted(RESULTS.rglob("*.png")):
        uri = path.relative_to(ROOT).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    return LINK.sub(r"\1\2", markdown)
