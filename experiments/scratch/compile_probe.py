"""Scratch: HLO size and lower/compile seconds, node_kit vs raw diffrax. OFF=a,b toggles suspects."""
import os, sys, time, json, types
import numpy as np
import diffrax, equinox as eqx, jax, jax.numpy as jnp, jax.random as jr
import node_kit as nk
import node_kit._solve as S, node_kit._cnf as C, node_kit._trace as T

OFF = set(filter(None, os.environ.get("OFF", "").split(",")))
if "fail" in OFF:
    S.raise_if_failed = lambda sol, ts, max_steps: sol
if "nan" in OFF:
    class P:
        def __getattr__(self, n): return getattr(eqx, n)
        error_if = staticmethod(lambda x, *a, **k: x)
    S.eqx = P(); C.eqx = P()
if "save" in OFF:
    class PD:
        def __getattr__(self, n): return getattr(diffrax, n)
        SaveAt = staticmethod(lambda ts: diffrax.SaveAt(t0=True, ts=ts[1:]))
    S.diffrax = PD()
if "probe" in OFF:
    old = T.HutchinsonTrace.draw_probe
    T.HutchinsonTrace.draw_probe = lambda self, k, s, d: jax.lax.stop_gradient(old(self, k, s, d))

class RK4(diffrax.AbstractERK):
    tableau = diffrax.ButcherTableau(
        c=np.array([0.5, 0.5, 1.0]),
        b_sol=np.array([1/6, 1/3, 1/3, 1/6]), b_error=np.zeros(4),
        a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])))
    interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k
    def order(self, terms): return 4

B, D = 256, 2
keys = jr.split(jr.key(0), 4)
xs = jr.normal(keys[1], (B, D)) * 2.0

def hutch_dyn(field):
    def f(t, state, probe):
        def one(s, e):
            z = s[:-1]
            fz, vjp = jax.vjp(lambda y: field(t, y, None), z)
            (ej,) = vjp(e)
            return jnp.concatenate([fz, jnp.sum(ej * e)[None]])
        return jax.vmap(one)(state, probe)
    return f

def exact_dyn(field):
    def f(t, state, args):
        def one(s):
            z = s[:-1]
            fz, vjp = jax.vjp(lambda y: field(t, y, None), z)
            (J,) = jax.vmap(vjp)(jnp.eye(z.shape[0], dtype=z.dtype))
            return jnp.concatenate([fz, jnp.trace(J)[None]])
        return jax.vmap(one)(state)
    return f

def nll(y1):
    z, ld = y1[:, :-1], y1[:, -1]
    return -jnp.mean(-0.5 * jnp.sum(z**2, 1) - 0.5 * z.shape[1] * jnp.log(2 * jnp.pi) + ld)

class Wrap(eqx.Module):
    field: eqx.Module
    def __call__(self, t, y, args): return self.dyn(t, y, args)

def workloads():
    field = nk.ConcatSquashField(D, 64, 3, key=keys[0])
    pid = diffrax.PIDController(rtol=1e-5, atol=1e-5)
    out = {}
    # A: FFJORD Hutchinson backsolve gradient
    cnf = nk.CNF(field, trace_estimator=nk.HutchinsonTrace(), solver=diffrax.Tsit5(), stepsize_controller=pid, adjoint="backsolve")
    nk_a = lambda m, x, k: nk.cnf_loss(m, x, key=k)[0]
    def raw_a(f, x, k):
        probe = jax.lax.stop_gradient(jr.rademacher(k, x.shape, dtype=x.dtype))
        y0 = jnp.concatenate([x, jnp.zeros((B, 1))], 1)
        term = diffrax.ODETerm(lambda t, y, a, f=f: hutch_dyn(f)(t, y, a))
        sol = diffrax.diffeqsolve(diffrax.ODETerm(_Dyn(f, "hutch")), diffrax.Tsit5(), 0.0, 1.0, None, y0, probe,
            stepsize_controller=pid, adjoint=diffrax.BacksolveAdjoint(), max_steps=4096)
        return nll(sol.ys[-1])
    out["cnf_hutch_backsolve_grad"] = ((cnf, nk_a), (field, raw_a), True)
    # B: exact-trace evaluation
    cnfe = nk.CNF(field, solver=diffrax.Tsit5(), stepsize_controller=pid)
    nk_b = lambda m, x, k: jnp.mean(m.log_prob_batched(x))
    def raw_b(f, x, k):
        y0 = jnp.concatenate([x, jnp.zeros((B, 1))], 1)
        sol = diffrax.diffeqsolve(diffrax.ODETerm(_Dyn(f, "exact")), diffrax.Tsit5(), 0.0, 1.0, None, y0,
            stepsize_controller=pid, max_steps=4096)
        return -nll(sol.ys[-1])
    out["cnf_exact_eval"] = ((cnfe, nk_b), (field, raw_b), False)
    # C/D: neural ODE fixed-step backsolve, trajectory MSE
    mlp = nk.MLPField(D, 64, 2, key=keys[2])
    ts = jnp.linspace(0.0, 1.0, 10)
    target = jnp.sin(ts)[None, :, None] * xs[:, None, :]
    for name, solver in [("euler", diffrax.Euler()), ("rk4", RK4())]:
        node = nk.NeuralODE(mlp, solver=solver, stepsize_controller=diffrax.ConstantStepSize(), dt0=0.05, adjoint="backsolve")
        nk_c = lambda m, x, k: jnp.mean((m.batched(ts, x) - target) ** 2)
        def raw_c(f, x, k, solver=solver):
            sol = diffrax.diffeqsolve(diffrax.ODETerm(_Dyn(f, "batch")), solver, 0.0, 1.0, 0.05, x,
                saveat=diffrax.SaveAt(ts=ts), adjoint=diffrax.BacksolveAdjoint(), max_steps=4096)
            return jnp.mean((jnp.moveaxis(sol.ys, 0, 1) - target) ** 2)
        out[f"node_{name}_backsolve_grad"] = ((node, nk_c), (mlp, raw_c), True)
    return out

class _Dyn(eqx.Module):
    field: eqx.Module
    kind: str = eqx.field(static=True)
    def __call__(self, t, y, args):
        if self.kind == "hutch": return hutch_dyn(self.field)(t, y, args)
        if self.kind == "exact": return exact_dyn(self.field)(t, y, args)
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, y, args)

def measure(model, loss, grad):
    fn = eqx.filter_value_and_grad(loss) if grad else loss
    jf = eqx.filter_jit(fn)
    t0 = time.perf_counter(); low = jf.lower(model, xs, jr.key(1)); t1 = time.perf_counter()
    txt = low.as_text(); comp = low.compile(); t2 = time.perf_counter()
    out = jax.block_until_ready(jf(model, xs, jr.key(1)))
    ts = []
    for _ in range(5):
        s = time.perf_counter(); jax.block_until_ready(jf(model, xs, jr.key(1))); ts.append(time.perf_counter() - s)
    val = out[0] if grad else out
    return dict(chars=len(txt), lines=txt.count("\n"), whiles=txt.count("stablehlo.while"), lower_s=round(t1-t0, 2), compile_s=round(t2-t1, 2), step_ms=round(1e3*float(np.median(ts)), 2), value=float(val))

only = sys.argv[1:] or None
for name, (nkp, rawp, grad) in workloads().items():
    if only and name not in only: continue
    r = {"nk": measure(*nkp, grad)}
    if "noraw" not in OFF: r["raw"] = measure(*rawp, grad)
    print(json.dumps({"workload": name, "off": sorted(OFF), **r}), flush=True)
