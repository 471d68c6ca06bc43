"""Latent ODE (Rubanova, Chen and Duvenaud 2019): an ODE-RNN encoder and a latent ODE decoder.

A variational autoencoder for ONE irregular series `(ts, values, mask)` (layout in
`node_kit._irregular`; batch with `jax.vmap`). The encoder is an [`node_kit.ODERNN`][] run
backwards in time: it reads the series from the last time point to the first (times
negated so they increase) and its readout at the first time `t0` gives
`q(z0) = N(mu, diag(sigma^2))`. The decoder solves `dz/dt = g(t, z)` from `z0` at `t0`
through every requested time with one [`node_kit.NeuralODE`][] solve and maps each latent
state to the mean of the observations with an MLP. The likelihood is Gaussian with a fixed
standard deviation `obs_std` and counts observed entries only.
"""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Real

from ._checks import check_int, check_ints, check_key, check_real
from ._custom_types import SeriesMask, SeriesValues, Times
from ._irregular import check_observed, check_series, check_series_times
from ._neural_ode import NeuralODE
from ._ode_rnn import ODERNN
from ._solve import saved_states, SolveSettings
from ._vector_field import MLPField


def gaussian_kl(mu: Float[Array, " latent"], sigma: Float[Array, " latent"]) -> Float[Array, ""]:
    """`KL(N(mu, diag(sigma^2)) || N(0, I))` in closed form, in nats.

    **Arguments:**

    - `mu`, `sigma`: mean and standard deviation (positive), shape `(latent_size,)`.

    **Returns:**

    A scalar: `0.5 * sum(sigma^2 + mu^2 - 1 - 2 log sigma)`.
    """
    return 0.5 * jnp.sum(sigma**2 + mu**2 - 1.0 - 2.0 * jnp.log(sigma))


def masked_gaussian_log_likelihood(
    values: Float[Array, "times data_size"],
    means: Float[Array, "times data_size"],
    observed: Bool[Array, "times data_size"],
    std: float,
) -> Float[Array, ""]:
    """`sum` over observed entries of `log N(values; means, std^2)`; masked entries add 0."""
    residual = (jnp.where(observed, values, means) - means) / std
    log_density = -0.5 * residual**2 - math.log(std) - 0.5 * math.log(2 * math.pi)
    return jnp.sum(jnp.where(observed, log_density, 0.0))


class LatentODE(eqx.Module):
    """Latent ODE VAE for ONE irregularly sampled series.

    **Arguments:**

    - `data_size`: channels per time point.
    - `latent_size`: size of `z0` and of the decoder's ODE state.
    - `hidden_size`: the encoder ODE-RNN's hidden size.
    - `width_size`, `depth`: the MLPs (both ODE fields, observation map, classifier).
    - `num_classes`: add a classifier head on `z0` with this many logits (`None`: none).
    - `obs_std`: the fixed observation standard deviation (the paper's code: 0.01, 1e-3 for hopper).
    - `settings`: the decoder's [`node_kit.SolveSettings`][]; or its arguments as
        keywords (`solver=...`, `adjoint=...`).
    - `encoder_settings`: the encoder's, per gap on `s in [0, 1]` (see
        [`node_kit.ODERNN`][]); `None`: the decoder's. The paper's encoder takes Euler
        steps: `settings.replace(solver=diffrax.Euler(),
        stepsize_controller=diffrax.ConstantStepSize(), dt0=1.0)` is one Euler step per
        gap, which is what the paper's code does on gaps shorter than 1/50 of the series'
        span (it takes steps of about that length on longer gaps).
    - `key`: a `jax.random` key, keyword-only.
    """

    data_size: int = eqx.field(static=True)
    latent_size: int = eqx.field(static=True)
    obs_std: float = eqx.field(static=True)
    encoder: ODERNN
    decoder: NeuralODE
    observation: eqx.nn.MLP
    classifier: eqx.nn.MLP | None

    def __init__(
        self,
        data_size: int,
        latent_size: int,
        hidden_size: int,
        width_size: int,
        depth: int,
        *,
        num_classes: int | None = None,
        obs_std: float = 0.01,
        settings: SolveSettings | None = None,
        encoder_settings: SolveSettings | None = None,
        key: PRNGKeyArray,
        **solve_keywords: Any,
    ):
        data_size, latent_size = check_ints(1, data_size=data_size, latent_size=latent_size)
        if num_classes is not None:
            check_int(
                "num_classes",
                num_classes,
                minimum=2,
                expected="an int >= 2 or None",
                fix="A classifier needs two classes or more; None builds no classifier.",
            )
        obs_std = check_real("obs_std", obs_std, positive=True, show_name=True)
        settings = SolveSettings.of(settings, **solve_keywords)
        encoder_settings = (
            settings if encoder_settings is None else SolveSettings.of(encoder_settings)
        )
        k_enc, k_field, k_obs, k_cls = jr.split(check_key("key", key), 4)
        self.encoder = ODERNN(
            data_size,
            hidden_size,
            width_size,
            depth,
            readout_size=2 * latent_size,
            settings=encoder_settings,
            key=k_enc,
        )
        # As the paper: tanh hidden layers and a linear output. A bounded (tanh) output caps
        # |dz/dt| at 1, which forces bang-bang, piecewise-linear latent paths on fast signals.
        field = MLPField(latent_size, width_size, depth, activation=jnp.tanh, key=k_field)
        self.decoder = NeuralODE(field, settings)
        self.observation = eqx.nn.MLP(latent_size, data_size, width_size, depth, key=k_obs)
        self.classifier = (
            None
            if num_classes is None
            else eqx.nn.MLP(latent_size, num_classes, width_size, depth, key=k_cls)
        )
        self.data_size = data_size
        self.latent_size = latent_size
        self.obs_std = float(obs_std)

    def posterior(
        self,
        ts: Times,
        values: SeriesValues,
        mask: SeriesMask,
        *,
        t0: Real[ArrayLike, ""] | None = None,
    ) -> tuple[Float[Array, " latent"], Float[Array, " latent"]]:
        """`q(z0)` at time `t0` (default `ts[0]`) from the backwards ODE-RNN.

        **Arguments:**

        - `ts`: strictly increasing times `(n,)`.
        - `values`: `(n, data_size)`; masked-out entries are ignored.
        - `mask`: like `values`, bool or 0/1.
        - `t0`: the time of `z0`; the encoder's state is evolved from the first
            observation to it.

        **Returns:**

        `(mu, sigma)`, each `(latent_size,)`, `sigma > 0`.
        """
        ts, values, observed = check_series(ts, values, mask, data_size=self.data_size, strict=True)
        return self._posterior(ts, values, observed, ts[0] if t0 is None else t0)[:2]

    def posterior_counted(
        self,
        ts: Times,
        values: SeriesValues,
        mask: SeriesMask,
        *,
        t0: Real[ArrayLike, ""] | None = None,
    ) -> tuple[Float[Array, " latent"], Float[Array, " latent"], Int[Array, ""]]:
        """`(mu, sigma, solver steps)`: `posterior` and the encoder's solver steps."""
        ts, values, observed = check_series(ts, values, mask, data_size=self.data_size, strict=True)
        return self._posterior(ts, values, observed, ts[0] if t0 is None else t0)

    def _posterior(self, ts, values, observed, t0):
        # The series is checked once, by the caller; the encoder reads it reversed.
        (h, t_last), _, num_steps = self.encoder.scan(-ts[::-1], values[::-1], observed[::-1])
        h, last_steps = self.encoder.evolve_counted(h, t_last, -jnp.asarray(t0, h.dtype))
        num_steps = num_steps + last_steps
        mu, raw = jnp.split(self.encoder.readout(h), 2)
        return mu, jax.nn.softplus(raw), num_steps

    def decode_counted(
        self, ts: Real[ArrayLike, " times"], z0: Float[Array, " latent"]
    ) -> tuple[Float[Array, "times data_size"], Int[Array, ""]]:
        """`(decode(ts, z0), solver steps of the decoder's solve)`."""
        return self._decode(check_series_times(ts, strict=True), z0)

    def decode(
        self, ts: Real[ArrayLike, " times"], z0: Float[Array, " latent"]
    ) -> Float[Array, "times data_size"]:
        """The observation means at `ts`, solving the latent ODE from `z0` at `ts[0]`.

        **Arguments:**

        - `ts`: strictly increasing times `(m,)`; `z0` is the state at `ts[0]`.
        - `z0`: the latent initial state, `(latent_size,)`.

        **Returns:**

        Means of the observations, `(m, data_size)`.
        """
        return self._decode(check_series_times(ts, strict=True), z0)[0]

    def _decode(self, ts, z0):
        """Decode on times already checked (strictly increasing)."""
        sol = self.decoder.solve_field(
            self.decoder.vector_field, ts.astype(z0.dtype), z0, y0_name="z0", times_checked=True
        )
        return jax.vmap(self.observation)(saved_states(sol)), sol.stats["num_steps"]

    def _sample_z0(self, mu, sigma, key, num_samples):
        check_key("key", key)
        return mu + sigma * jr.normal(key, (num_samples, self.latent_size), mu.dtype)

    def elbo(
        self,
        ts: Times,
        values: SeriesValues,
        mask: SeriesMask,
        *,
        key: PRNGKeyArray,
        num_samples: int = 1,
        target_mask: SeriesMask | None = None,
    ) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
        """The evidence lower bound of one series, averaged over `num_samples` draws of `z0`.

        `E_q[log p(x | z0)] - KL(q(z0) || N(0, I))`: the encoder reads the entries where
        `mask` is 1, the log-likelihood sums over the entries where `target_mask` is 1
        (default: `mask`), and the KL term is exact ([`node_kit.gaussian_kl`][]). A
        `target_mask` wider than `mask` trains interpolation (hidden points are predicted)
        or extrapolation (a `mask` over the first half, a `target_mask` over the rest).

        **Arguments:**

        - `ts`, `values`, `mask`: the series, as for `posterior`. Without a `target_mask`,
            `mask` must observe at least one entry (a series with none would have the
            ELBO `-KL`: a `ValueError`, or an `eqx.EquinoxRuntimeError` at run time when
            the mask is traced). With one, the encoder may read nothing.
        - `key`: draws the `z0` samples (`mu + sigma * jr.normal(key, (num_samples, latent))`).
        - `num_samples`: number of `z0` draws, a positive int.
        - `target_mask`: like `mask`; the entries the likelihood counts (their values
            must be finite; at least one).

        **Returns:**

        `(elbo, aux)`: a scalar, and `aux` with the scalars `"log_likelihood"` (the sample
        mean), `"kl"` and `"num_steps"` (solver steps: the encoder's, one solve per time point
        plus the last to `ts[0]`, see `ODERNN.states_counted`, plus the decoder's averaged
        over the samples).
        """
        return self._elbo(ts, values, mask, key, num_samples, target_mask)[:2]

    def elbo_and_logits(
        self,
        ts: Times,
        values: SeriesValues,
        mask: SeriesMask,
        *,
        key: PRNGKeyArray,
        num_samples: int = 1,
        target_mask: SeriesMask | None = None,
    ) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]], Float[Array, "samples classes"]]:
        """`elbo(...)` and the classifier's logits at each `z0` draw, from one encoder pass.

        For training the classifier jointly with the ELBO, as the paper does for labelled
        data. Arguments as for `elbo`. **Returns:** `(elbo, aux, logits)`, logits of shape
        `(num_samples, num_classes)`.
        """
        if self.classifier is None:
            raise ValueError(
                "this LatentODE has no classifier; construct it with `num_classes=` to use "
                "`elbo_and_logits`."
            )
        elbo, aux, z0s = self._elbo(ts, values, mask, key, num_samples, target_mask)
        return elbo, aux, jax.vmap(self.classifier)(z0s)

    def _elbo(self, ts, values, mask, key, num_samples, target_mask):
        check_ints(1, num_samples=num_samples)
        check_key("key", key)  # before the encoder runs, not after
        ts, values, observed = check_series(ts, values, mask, data_size=self.data_size, strict=True)
        if target_mask is None:
            target = observed = check_observed(observed, "mask")
        else:  # the encoder may read nothing (a prior-like posterior); the likelihood may not
            _, values, target = check_series(
                ts, values, target_mask, data_size=self.data_size, strict=True
            )
            target = check_observed(target, "target_mask")
        mu, sigma, encoder_steps = self._posterior(ts, values, observed, ts[0])
        z0s = self._sample_z0(mu, sigma, key, num_samples)
        means, decoder_steps = jax.vmap(lambda z0: self._decode(ts, z0))(z0s)
        log_likelihood = jnp.mean(
            jax.vmap(masked_gaussian_log_likelihood, in_axes=(None, 0, None, None))(
                values, means, target, self.obs_std
            )
        )
        kl = gaussian_kl(mu, sigma)
        num_steps = encoder_steps + jnp.mean(decoder_steps)
        aux = {"log_likelihood": log_likelihood, "kl": kl, "num_steps": num_steps}
        return log_likelihood - kl, aux, z0s

    def classify(
        self, ts: Times, values: SeriesValues, mask: SeriesMask, *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " classes"]:
        """Class logits from `z0`: the posterior mean, or one sample if `key` is given.

        **Arguments:** the series as for `posterior`; `key` to sample `z0`.

        **Returns:** logits `(num_classes,)`.
        """
        if self.classifier is None:
            raise ValueError(
                "this LatentODE has no classifier; construct it with `num_classes=` to use "
                "`classify`."
            )
        if key is not None:
            check_key("key", key)
        mu, sigma = self.posterior(ts, values, mask)
        z0 = mu if key is None else self._sample_z0(mu, sigma, key, 1)[0]
        return self.classifier(z0)

    def predict(
        self,
        ts: Times,
        values: SeriesValues,
        mask: SeriesMask,
        ts_query: Real[ArrayLike, " query"],
        *,
        key: PRNGKeyArray,
        num_samples: int = 1,
    ) -> Float[Array, "samples query data_size"]:
        """Reconstruct or extrapolate: observation means at `ts_query`, one row per `z0` draw.

        `z0` is drawn from `q(z0)` at `ts_query[0]` (the encoder evolves its state from the
        first observation to there), then decoded through `ts_query`. The spread over the
        samples is the model's uncertainty (the observation noise `obs_std` is not added).

        **Arguments:**

        - `ts`, `values`, `mask`: the observed series, as for `posterior`.
        - `ts_query`: strictly increasing times `(m,)` to predict at, anywhere.
        - `key`: draws the `z0` samples.
        - `num_samples`: number of draws, a positive int.

        **Returns:**

        Means `(num_samples, m, data_size)`; `.mean(0)` and `.std(0)` summarise them.
        """
        check_ints(1, num_samples=num_samples)
        check_key("key", key)
        ts_query = check_series_times(ts_query, strict=True, name="ts_query")
        mu, sigma = self.posterior(ts, values, mask, t0=ts_query[0])
        z0s = self._sample_z0(mu, sigma, key, num_samples)
        return jax.vmap(lambda z0: self._decode(ts_query, z0)[0])(z0s)
