"""Datasets for node_kit, built offline as TensorFlow-Datasets (array_record, no TensorFlow).

`load(name, split)` returns a dict of NumPy arrays (`"x"` always; `"label"` for labelled data;
`"t"` for the time series `periodic`, `hopper` and `japanese_vowels`, which adds `"mask"` and
`"length"`).
TensorFlow-Datasets is imported only when a dataset is built or read, so importing this package
stays fast.

Each dataset is described by one `DatasetSpec` in its own file; `register(spec)` adds one.

This package needs the `experiments` extra (`pip install "node_kit[experiments]"`); without
it, importing it raises `ImportError` with that line.
"""

from .._extras import DATASET_PACKAGES, require_experiments_extra


require_experiments_extra("node_kit.datasets", DATASET_PACKAGES)

from ._batching import (
    batch_at as batch_at,
    batch_indices as batch_indices,
    batches as batches,
    num_batches as num_batches,
)
from ._density import (
    ANALYTIC_NAMES as ANALYTIC_NAMES,
    checkerboard_area as checkerboard_area,
    log_density as log_density,
)
from ._digits import DIGITS_SPLIT_SIZES as DIGITS_SPLIT_SIZES
from ._entropy import true_entropy as true_entropy
from ._hopper import (
    HOPPER_NUM_STEPS as HOPPER_NUM_STEPS,
    HOPPER_SPLIT_SIZES as HOPPER_SPLIT_SIZES,
    HOPPER_STATE_DIM as HOPPER_STATE_DIM,
    normalise_min_max as normalise_min_max,
    require_dm_control as require_dm_control,
    sample_hopper as sample_hopper,
)
from ._images import (
    check_mnist_prepared as check_mnist_prepared,
    downsample as downsample,
    IMAGE_FORMATS as IMAGE_FORMATS,
    image_split_sizes as image_split_sizes,
    ImageFormat as ImageFormat,
    load_images as load_images,
    MNIST_5K_SPLIT_SIZES as MNIST_5K_SPLIT_SIZES,
    read_mnist_5k as read_mnist_5k,
)
from ._load import (
    available as available,
    load as load,
    metadata as metadata,
    unavailable as unavailable,
)
from ._periodic import (
    PERIODIC_NUM_POINTS as PERIODIC_NUM_POINTS,
    PERIODIC_SPLIT_SIZES as PERIODIC_SPLIT_SIZES,
    PERIODIC_T_MAX as PERIODIC_T_MAX,
    sample_periodic as sample_periodic,
)
from ._preprocess import (
    bits_per_dim as bits_per_dim,
    check_pixel_values as check_pixel_values,
    DEFAULT_ALPHA as DEFAULT_ALPHA,
    dequantize as dequantize,
    DIGITS_NUM_LEVELS as DIGITS_NUM_LEVELS,
    inverse_logit_transform as inverse_logit_transform,
    logit_transform as logit_transform,
    preprocess as preprocess,
)
from ._registry import (
    DATA_DIR_ENV as DATA_DIR_ENV,
    get_spec as get_spec,
    names as names,
    register as register,
    Registration as Registration,
    resolve_data_dir as resolve_data_dir,
    specs as specs,
    TIME_SERIES_NAMES as TIME_SERIES_NAMES,
)
from ._series import SeriesPreparation as SeriesPreparation
from ._sinusoid import (
    sinusoid as sinusoid,
    sinusoid_tasks as sinusoid_tasks,
    SinusoidTasks as SinusoidTasks,
)
from ._spec import (
    DatasetSpec as DatasetSpec,
    Feature as Feature,
    Generated as Generated,
    Requirement as Requirement,
    split_rows as split_rows,
    SPLITS as SPLITS,
)
from ._toy2d import (
    sample_toy2d as sample_toy2d,
    TOY2D_NAMES as TOY2D_NAMES,
    TOY2D_SPLIT_SIZES as TOY2D_SPLIT_SIZES,
)
from ._uea import (
    JAPANESE_VOWELS_MAX_LENGTH as JAPANESE_VOWELS_MAX_LENGTH,
    JAPANESE_VOWELS_NUM_CHANNELS as JAPANESE_VOWELS_NUM_CHANNELS,
    JAPANESE_VOWELS_NUM_CLASSES as JAPANESE_VOWELS_NUM_CLASSES,
    JAPANESE_VOWELS_SPLIT_SIZES as JAPANESE_VOWELS_SPLIT_SIZES,
    read_japanese_vowels as read_japanese_vowels,
    read_ts as read_ts,
)
