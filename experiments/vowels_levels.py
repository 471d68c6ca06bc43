#!/usr/bin/env python
"""How much of japanese_vowels' speaker is in the channels' levels alone: nearest class mean
on each series' mean of its observed values (50% of the points kept, the classification
task's masks), test accuracy.

    .venv/bin/python experiments/vowels_levels.py

A neural CDE sees the levels of a series only through its initial state (a linear map of
the path's first value); the rest of the path reaches it through its increments.
"""
import numpy as np

from node_kit.experiments import timeseries as ts_experiment
from node_kit.experiments._series_data import load_data
from node_kit.experiments._series_tasks import TASKS
config = ts_experiment.parse_args(["--dataset", "japanese_vowels", "--task", "classification", "--observed", "0.5", "--out", "/tmp/x"])
data = load_data(config, TASKS["classification"])
def feats(split):
    m = np.asarray(split.readable)
    x = np.where(m, split.x, 0.0)
    return x.sum(1) / np.maximum(m.sum(1), 1)
tr, te = feats(data.train), feats(data.test)
ytr, yte = np.asarray(data.train.label), np.asarray(data.test.label)
means = np.stack([tr[ytr == c].mean(0) for c in range(9)])
pred = np.argmin(((te[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
print("nearest class mean of the levels:", (pred == yte).mean())
