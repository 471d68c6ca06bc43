"""Runnable experiments: `python -m node_kit.experiments.<name>`."""
