"""Fit the rational form of the CPU kernels' float tanh (csrc/cpu/vec_math.h) and check it.

tanh(x) ~ x P(x^2) / Q(x^2) on [0, 9], P of degree 6 and Q of degree 3 in x^2 (Q(0) = 1):
linearized least squares P - f Q ~ 0 with weights 1 / (f Q), iterated, and the weights raised
where the relative error is largest (Lawson's step) towards the minimax fit. Prints the float32
coefficients and the worst relative error of the float32 evaluation (numpy, no FMA) against
float64 tanh. Needs numpy only:  python scripts/fit_tanh.py
"""
import numpy as np

DEG_P, DEG_Q, CLAMP = 6, 3, 9.0

x = np.concatenate([np.linspace(0, CLAMP, 20000), CLAMP * (1 - np.cos(np.linspace(0, np.pi / 2, 20000)))])
f = np.where(x == 0, 1.0, np.tanh(x) / np.where(x == 0, 1, x))  # tanh(x) / x as a function of u
scale = CLAMP * CLAMP
u = x * x / scale  # in [0, 1]: keeps the least squares well conditioned
w = np.ones_like(u)
q_prev = np.ones_like(u)
for _ in range(60):
    A = np.hstack([u[:, None] ** np.arange(DEG_P + 1), -f[:, None] * u[:, None] ** np.arange(1, DEG_Q + 1)])
    weight = w / (f * q_prev)
    sol, *_ = np.linalg.lstsq(A * weight[:, None], f * weight, rcond=None)
    p, q = sol[: DEG_P + 1], np.concatenate([[1.0], sol[DEG_P + 1:]])
    P, Q = np.polyval(p[::-1], u), np.polyval(q[::-1], u)
    err = np.abs(P / Q - f) / f
    q_prev = Q
    w = w * np.sqrt(err / err.max()) + 1e-12
    w /= w.sum()
print(f"fit, exact arithmetic: worst relative error {err.max():.3g}")
pf = (p / scale ** np.arange(DEG_P + 1)).astype(np.float32)  # coefficients of x^2k
qf = (q / scale ** np.arange(DEG_Q + 1)).astype(np.float32)


def tanh32(v):
    a = np.minimum(np.abs(v.astype(np.float32)), np.float32(CLAMP))
    t = a * a
    P = np.full_like(t, pf[-1])
    for c in pf[-2::-1]:
        P = P * t + c
    Q = np.full_like(t, qf[-1])
    for c in qf[-2::-1]:
        Q = Q * t + c
    return np.copysign(np.minimum(a * P / Q, np.float32(1)), v)


rng = np.random.default_rng(0)
v = np.concatenate([rng.uniform(-12, 12, 2_000_000), np.exp(rng.uniform(-30, 2.5, 1_000_000))]).astype(np.float32)
rel = np.abs(tanh32(v) - np.tanh(v.astype(np.float64))) / np.abs(np.tanh(v.astype(np.float64)))
print(f"float32 evaluation: worst relative error {rel.max():.3g} at x = {v[rel.argmax()]}")
print("P (x^0, x^2, ...):", ", ".join(f"{float(c)!r}f" for c in pf))
print("Q (x^0, x^2, ...):", ", ".join(f"{float(c)!r}f" for c in qf))
