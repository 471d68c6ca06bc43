"""The classical fourth-order Runge–Kutta method, for fixed-step solves."""

from typing import ClassVar

import diffrax
import numpy as np
from jaxtyping import Array, PyTree


class RK4(diffrax.AbstractERK):
    """The classical fourth-order Runge–Kutta method (Kutta 1901): four field evaluations
    per step, global error O(dt^4).

    It has no embedded error estimate, so it takes fixed steps
    (`diffrax.ConstantStepSize`, a `dt0`); with an adaptive step-size controller diffrax
    raises that the solver gives no error estimate. It is the usual fixed-step solver of
    neural ODE papers (`method="rk4"` in torchdiffeq). Dense output is the third-order
    Hermite interpolation of the step's end points and slopes.
    """

    tableau: ClassVar[diffrax.ButcherTableau] = diffrax.ButcherTableau(
        c=np.array([0.5, 0.5, 1.0]),
        b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
        b_error=np.zeros(4),
        a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    )
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms: PyTree[diffrax.AbstractTerm]) -> int:
        return 4

    def step(
        self,
        terms: PyTree[diffrax.AbstractTerm],
        t0: float | Array | np.ndarray,
        t1: float | Array | np.ndarray,
        y0: PyTree[Array],
        args: PyTree,
        solver_state: PyTree,
        made_jump: bool | Array | np.ndarray,
    ) -> tuple[PyTree[Array], None, dict[str, PyTree[Array]], PyTree, diffrax.RESULTS]:
        # No error estimate (the tableau's zero `b_error` is a placeholder), so that an
        # adaptive controller refuses this solver instead of accepting every step.
        y1, _, dense_info, solver_state, result = super().step(
            terms, t0, t1, y0, args, solver_state, made_jump
        )
        return y1, None, dense_info, solver_state, result
