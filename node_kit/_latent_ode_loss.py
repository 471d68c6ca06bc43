"""The losses of a batch of series for a [`node_kit.LatentODE`][]: per-series ELBO terms and
their mean, with the checks of the batch and the KL weight."""

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import as_array, check_key, check_real, type_name
from ._irregular import check_observed
from ._latent_ode import LatentODE


def latent_ode_terms(
    model: LatentODE,
    batch: dict[str, Array],
    key: PRNGKeyArray,
    *,
    num_samples: int = 1,
    logits: bool = False,
) -> dict[str, Array]:
    """The ELBO terms of every series of a batch: what a latent ODE loss is built from.

    [`node_kit.latent_ode_loss`][] averages them over the series; a loss that weighs them
    otherwise (per observed entry, or with a classifier) starts from the same terms.

    **Arguments:**

    - `model`, `batch`, `key`, `num_samples`: as for [`node_kit.latent_ode_loss`][]; `key`
        is split into one key per series, `jr.split(key, batch_size)`.
    - `logits`: also return the classifier's logits at each `z0` draw (the model needs
        `num_classes`), from the same encoder pass ([`node_kit.LatentODE.elbo_and_logits`][]).

    **Returns:**

    A dict of per-series arrays: `"log_likelihood"`, `"kl"`, `"num_steps"`, each
    `(batch,)`, and with `logits`, `"logits"` of shape `(batch, num_samples, num_classes)`.
    """
    _check_batch(batch)
    mask = batch.get("mask", jnp.ones(jnp.shape(batch["x"]), bool))
    target = batch.get("target_mask", mask)
    keys = jr.split(check_key("key", key), jnp.shape(batch["x"])[0])

    def one(t: Array, x: Array, m: Array, target_m: Array, k: PRNGKeyArray) -> dict[str, Array]:
        if logits:
            _, aux, class_logits = model.elbo_and_logits(
                t, x, m, key=k, num_samples=num_samples, target_mask=target_m
            )
            return {**aux, "logits": class_logits}
        return model.elbo(t, x, m, key=k, num_samples=num_samples, target_mask=target_m)[1]

    return jax.vmap(one)(batch["t"], batch["x"], mask, target, keys)


def latent_ode_loss(
    model: LatentODE,
    batch: dict[str, Array],
    key: PRNGKeyArray,
    *,
    num_samples: int = 1,
    kl_weight: float | Float[Array, ""] = 1.0,
) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    """The negative ELBO of a batch: a `loss_fn` for [`node_kit.make_step`][] and `fit`.

    **Arguments:**

    - `model`: the [`node_kit.LatentODE`][].
    - `batch`: `{"t": (batch, n), "x": (batch, n, data_size)}` and optionally `"mask"`
        like `"x"` (what the encoder reads; default: everything observed) and
        `"target_mask"` (what the likelihood counts; default `"mask"`).
    - `key`: split into one key per series.
    - `num_samples`: `z0` draws per series.
    - `kl_weight`: multiplies the KL term (anneal it from 0 to 1; 1 is the ELBO); a
        finite, non-negative Python float or a traced scalar (a schedule inside `jit`,
        checked at run time).

    **Returns:**

    `(loss, aux)`: `loss = -mean(log_likelihood - kl_weight * kl)` over the batch, and the
    batch means `"log_likelihood"`, `"kl"`, `"num_steps"` and `"elbo"`.
    """
    kl_weight = _check_kl_weight(kl_weight)
    aux = latent_ode_terms(model, batch, key, num_samples=num_samples)
    aux = {name: jnp.mean(value) for name, value in aux.items()}
    aux["elbo"] = aux["log_likelihood"] - aux["kl"]
    return -(aux["log_likelihood"] - kl_weight * aux["kl"]), aux


def _check_batch(batch) -> None:
    """A batch of series: a dict with `"t"` and `"x"`.

    A concrete mask with nothing observed in some series is refused here with a
    `ValueError` naming that series; a traced one is checked per series by `elbo`.
    """
    if not isinstance(batch, Mapping) or "t" not in batch or "x" not in batch:
        got = (
            f"a dict with the keys {sorted(batch)}"
            if isinstance(batch, Mapping)
            else (type_name(batch))
        )
        raise ValueError(
            '`batch` must be a dict with the times "t" (batch, n) and the values "x" '
            '(batch, n, data_size), and optionally "mask" and "target_mask" like "x"; got '
            f"{got}."
        )
    # The likelihood's mask must observe something: "target_mask", or "mask" without one.
    name = "target_mask" if "target_mask" in batch else "mask"
    if name in batch:
        mask = as_array(name, batch[name], 'a bool or 0/1 array shaped like batch["x"]')
        if mask.ndim == 3 and not isinstance(mask, jax.core.Tracer):
            check_observed(mask != 0, name)


def _check_kl_weight(kl_weight):
    """A finite, non-negative KL weight: checked now if concrete, at run time if traced."""
    if isinstance(kl_weight, jax.core.Tracer):
        bad = ~jnp.isfinite(kl_weight) | (kl_weight < 0)
        return eqx.error_if(kl_weight, bad, "`kl_weight` must be finite and non-negative.")
    dtype = getattr(kl_weight, "dtype", None)
    if dtype is not None and jnp.ndim(kl_weight) == 0 and jnp.issubdtype(dtype, jnp.floating):
        kl_weight = float(kl_weight)  # a concrete 0-d array, NumPy or JAX
    return check_real(
        "kl_weight",
        kl_weight,
        non_negative=True,
        expected="a non-negative float (or a traced scalar)",
        fix="Anneal it from 0 to 1; 1 is the ELBO.",
    )
