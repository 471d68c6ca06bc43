"""The commands' optimizers: AdamW on a cosine schedule, and gradient clipping."""

import functools

import optax


@functools.lru_cache(maxsize=16)
def training_optimizer(lr: float, steps: int, clip_norm: float) -> optax.GradientTransformation:
    """The commands' optimizer: AdamW (weight decay 1e-5) on a cosine schedule from `lr`
    down to 5% of it over `steps`, after clipping the gradient's norm to `clip_norm` (0: off).

    Cached: equal settings give the same object, so a second run in one process (a resume,
    a test) reuses the compiled training step instead of compiling it again.
    """
    schedule = optax.cosine_decay_schedule(lr, steps, alpha=0.05)
    return with_clipping(optax.adamw(schedule, weight_decay=1e-5), clip_norm)


def with_clipping(optimizer: optax.GradientTransformation, clip_norm: float):
    """`optimizer` after clipping the gradient's global norm to `clip_norm` (0: unclipped)."""
    if clip_norm == 0:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
