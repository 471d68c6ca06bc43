"""How far the reversible adjoint's rebuilt states drift from the forward ones.

The backward pass of `adjoint="reversible"` rebuilds each step's states from the end by
inverting the step in algebra; in floating point each inversion adds rounding error, and
it divides by the coupling λ each step, so the drift can grow with the number of steps N.
This script solves a neural ODE (MLP field, tanh, 2 -> 32 -> 32 -> 2) on [0, 1] with N
fixed steps, rebuilds the initial state from the final pair by N inverse steps, and
records the relative error of the rebuilt y_0, in float32 and float64, for N from 10 to
10^4, with Heun and Tsit5, and λ = 0.9999, 0.999 (the default) and 0.9. A rebuild that
overflows is recorded as null and left out of the picture.

    python experiments/reversible_reconstruction.py

writes experiments/results/reversible/reconstruction.json and reconstruction.png.
"""

import json
import math
import sys
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

import node_kit as nk
from node_kit._reversible import _fixed_time, _forward, _increment, _Static
from node_kit.experiments._adjoint_tables import reconstruction_table
from node_kit.experiments._outputs import plt, provenance


OUT = Path(__file__).parent / "results" / "reversible"
STEPS = (10, 100, 1000, 10_000)
SOLVERS = {"heun": diffrax.Heun(), "tsit5": diffrax.Tsit5()}
COUPLINGS = (0.9999, 0.999, 0.9)


def rebuild_error(solver, coupling: float, n: int, dtype) -> float:
    """Relative max-norm error of y_0 rebuilt from the end of an n-step solve."""
    with jax.enable_x64(dtype == jnp.float64):
        field = nk.MLPField(2, 32, 2, activation=jnp.tanh, key=jr.key(0))
        field = jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, field)
        y0 = jnp.array([0.6, -0.4], dtype)
        ts = jnp.array([0.0, 1.0], dtype)
        static = _Static(coupling, solver, diffrax.ConstantStepSize(), 1.0 / n, n)

        @jax.jit
        def run(y0):
            (_, _, _, ok), (counts, _, y, z) = _forward(static, field, y0, None, ts)

            def back(i, yz):
                y1, z1 = yz
                k = n - 1 - i
                t0 = _fixed_time(static, ts, 0, k - 1, counts[0])
                t1 = _fixed_time(static, ts, 0, k, counts[0])
                z0 = z1 + _increment(solver, field, None, t1, t0, y1)[0]
                d = _increment(solver, field, None, t0, t1, z0)[0]
                return (y1 - (1 - coupling) * z0 - d) / coupling, z0

            y_back, _ = jax.lax.fori_loop(0, n, back, (y, z))
            return ok & (counts[0] == n), jnp.max(jnp.abs(y_back - y0)) / jnp.max(jnp.abs(y0))

        ok, error = run(y0)
        assert bool(ok), (n, "the forward solve did not take n steps")
        return float(error)


def main() -> None:
    start = time.perf_counter()
    rows = []
    for name, solver in SOLVERS.items():
        for coupling in COUPLINGS:
            for dtype in (jnp.float32, jnp.float64):
                for n in STEPS:
                    error = rebuild_error(solver, coupling, n, dtype)
                    # A rebuild that overflowed is recorded as null (strict JSON has no NaN).
                    rows.append({"solver": name, "coupling": coupling,
                                 "dtype": jnp.dtype(dtype).name, "steps": n,
                                 "relative_error": error if math.isfinite(error) else None})
                    print(f"{name} λ={coupling} {jnp.dtype(dtype).name} N={n}: {error:.3g}",
                          file=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"command": "python experiments/reversible_reconstruction.py",
              "problem": "MLP field 2-32-32-2 (tanh), y0 = (0.6, -0.4), [0, 1], N fixed steps; "
                         "y_0 rebuilt from (y_N, z_N) by N inverse steps",
              "rows": rows, "provenance": provenance(),
              "wall_s": time.perf_counter() - start}
    (OUT / "reconstruction.json").write_text(json.dumps(result, indent=1) + "\n")
    fig, axes = plt().subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, name in zip(axes, SOLVERS):
        for coupling in COUPLINGS:
            for dtype, style in (("float32", "-o"), ("float64", "--s")):
                pts = [(r["steps"], max(r["relative_error"], 1e-17)) for r in rows
                       if r["relative_error"] is not None and r["solver"] == name and r["coupling"] == coupling and r["dtype"] == dtype]
                ax.loglog(*zip(*pts), style, label=f"λ={coupling}, {dtype}")
        ax.set_title(f"reversible {name}: rebuilt y_0 (missing: overflowed)", fontsize=9)
        ax.set_xlabel("solver steps N")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("relative error of the rebuilt y_0")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "reconstruction.png", dpi=120)
    print(reconstruction_table(result))
    print(f"wrote {OUT / 'reconstruction.json'} and reconstruction.png")


if __name__ == "__main__":
    main()
