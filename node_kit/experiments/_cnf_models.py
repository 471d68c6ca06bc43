"""The CNF command's models: `--model` resolved, the image flags checked against the
dataset, and the flow a config trains (`build_cnf`, `model_skeleton`)."""

import jax.random as jr

import node_kit as nk
from node_kit import datasets

from ._choices import solve_settings, trace_estimator_from_name
from ._cnf_data import image_format


MODEL_NAMES = ("auto", "concatsquash", "multiscale")
"""`--model`: the flows the command trains."""


def resolve_model(model: str, dataset: str) -> str:
    """`--model` resolved: `auto` is multiscale for MNIST, concatsquash otherwise (also for
    the configs of runs made before `--model` existed, which read as `auto`)."""
    if model != "auto":
        return model
    return "multiscale" if dataset in ("mnist", "mnist_5k") else "concatsquash"


def model_name(config) -> str:
    """A config's `--model`, resolved by [`resolve_model`][]."""
    return resolve_model(config.model, config.dataset)


def check_image_flags(config) -> None:
    """`--model multiscale`, `--downsample`, `--alpha` and `--scales` need image data, and
    the image must allow them."""
    image = datasets.IMAGE_FORMATS.get(config.dataset)
    multiscale = model_name(config) == "multiscale"
    image_only = {
        "--model multiscale": multiscale,
        f"--downsample {config.downsample}": config.downsample != 1,
        f"--alpha {config.alpha}": config.alpha is not None,
    }
    for flag, given in image_only.items():
        if given and image is None:
            raise ValueError(
                f"{flag} applies to image datasets {list(datasets.IMAGE_FORMATS)}; got "
                f"--dataset {config.dataset}. Drop it for the 2-D toys."
            )
    if config.scales and not multiscale:
        raise ValueError(
            f"--scales {config.scales} applies to --model multiscale; got --model "
            f"{config.model} on {config.dataset}. Drop --scales or pass --model multiscale."
        )
    if config.alpha is not None and not 0 <= config.alpha < 0.5:
        raise ValueError(
            f"--alpha must satisfy 0 <= alpha < 0.5 (the logit of alpha + (1 - 2 alpha) u); "
            f"got {config.alpha}. E.g. --alpha 1e-6 (FFJORD's MNIST value)."
        )
    if image is None:
        return
    if config.dataset == "mnist" and config.sample is None and not config.evaluate:
        datasets.check_mnist_prepared(config.data_dir or None, shown="--data-dir")
    _, height, width = image.shape
    if height % config.downsample or width % config.downsample:
        raise ValueError(
            f"--downsample {config.downsample} must divide the {height}x{width} images of "
            f"{config.dataset}; e.g. --downsample 2 (MNIST at 14x14)."
        )
    if multiscale and config.scales:
        nk.scale_shapes(image.downsampled(config.downsample).shape, config.scales)


def build_cnf(config, data_size: int, key) -> nk.CNF | nk.MultiscaleCNF:
    """The flow of `--model` with its solver, adjoint and trace estimator from the config."""
    trace_estimator = trace_estimator_from_name(config.trace, config.probe)
    settings = solve_settings(config.solver, config.adjoint, rtol=config.rtol, atol=config.atol)
    if model_name(config) == "multiscale":
        image = image_format(config)
        assert image is not None  # checked by check_image_flags
        return nk.MultiscaleCNF(
            image.shape,
            scales=config.scales or None,
            blocks=config.blocks,
            width=config.width,
            depth=config.depth,
            trace_estimator=trace_estimator,
            t1=config.t1,
            settings=settings,
            key=key,
        )
    field = nk.ConcatSquashField(data_size, config.width, config.depth, key=key)
    return nk.CNF(field, trace_estimator=trace_estimator, t1=config.t1, settings=settings)


def model_skeleton(config) -> nk.CNF | nk.MultiscaleCNF:
    """The flow `config` trains, with untrained weights: what `nk.load_run` fills."""
    image = image_format(config)
    if image is not None:
        data_size = image.size
    else:
        data_size = datasets.get_spec(config.dataset).features["x"].shape[-1]
    return build_cnf(config, data_size, jr.key(0))
