r"""Samplers that diffusers ships beyond the Karras / DPM-Solver family: UniPC, DEIS, DPM-Solver
singlestep, PNDM, LCM, TCD (registered into :mod:`lindiff.samplers` by :func:`register`).

Each builder writes the paper's update rule as a lindiff program (slots, noises, stages; see
:mod:`lindiff._program`), so the exact law, the Monte Carlo twin (:func:`lindiff.mc.sample`) and the
coefficient table (:func:`lindiff.sampler_table`) come from the same coefficients.  Notation: on a step
from ``s`` to ``t`` the VP state is ``x``, ``alpha``, ``sigma`` the process's scales,
``lambda = log(alpha/sigma)`` the half log-SNR, ``h = lambda_t - lambda_s``, and ``phi_k`` the
exponential-integrator functions (``phi_1(z) = (e^z - 1)/z``, ``phi_{k+1}(z) = (phi_k(z) - 1/k!)/z``).
Model outputs ``m`` are data predictions ``x0_hat`` (``predict_x0``/``++`` variants) or noise
predictions ``eps_hat``.  Derivations: ``derivations/diffusers_samplers.py``.
"""

from __future__ import annotations

import math

import numpy as np

from ._program import StepBuilder, lc
from ._validation import as_positive_int

__all__ = ["register", "singlestep_orders"]


def _levels(process, g):
    from .samplers import _Level

    return [_Level(process, t) for t in g]


def _phi(k: int, z: float) -> float:
    from .samplers import _phi as phi

    return phi(k, z)


def _ratio(a, b) -> float:
    """``alpha_b / alpha_a`` for two levels (``inf`` past the float64 range)."""
    from .samplers import _exp

    return _exp(b.la - a.la)


def _noise_ratio(name: str, a, b) -> float:
    """``alpha_b / alpha_a`` of a noise-prediction step, refused where float64 loses the step to cancellation
    (see ``lindiff.samplers._NOISE_RATIO_MAX``)."""
    from .samplers import _noise_step_ratio

    return _noise_step_ratio(name, a, b)


def _sigma_ratio(a, b, r_a: float, h: float) -> float:
    """``sigma_b / sigma_a = (alpha_b / alpha_a) e^{-h}``, from the levels where ``alpha_b / alpha_a`` overflows."""
    return r_a * math.exp(-h) if r_a < 1e150 else b.s / a.s  # (the product would pass through subnormals)


def _lam_gap(a, b) -> float:
    """``lambda_b - lambda_a`` (``inf`` when ``b`` has sigma = 0)."""
    return (a.lsv - b.lsv) if b.s > 0 else math.inf


# ------------------------------------------------------------------------------------------------
# UniPC (Zhao et al. 2023)
def _unipc_rho(rks: list[float], z: float, bh: str, predictor: bool) -> list[float]:
    r"""``B(h) rho`` for UniP (``predictor``, over the past points) or UniC (past points and the new one).

    Zhao et al. (2023), Alg. 2/3 with ``B(h)``: ``R rho = b`` with ``R_{ik} = r_k^{i-1}`` and
    ``b_i = z phi_{i+1}(z) i! / B(h)`` (``z = -h`` for data predictions, ``h`` for noise predictions),
    i.e. ``B(h) b_i = i! phi_i(z) - 1``; UniP-2 and UniC-1 use ``rho = 1/2`` (the authors' choice).
    Returns ``B(h) rho`` (finite where ``B`` is not)."""
    B = z if bh == "bh1" else math.expm1(z)
    p = len(rks)
    if (predictor and p == 1) or (not predictor and p == 1):
        return [0.5 * B]
    Bb = np.array([math.factorial(i) * _phi(i, z) - 1.0 for i in range(1, p + 1)])
    R = np.array([[r ** (i - 1) for r in rks] for i in range(1, p + 1)])
    return list(np.linalg.solve(R, Bb))


def _unipc_update(ls, lt, x_reg, m0, past, m_new, bh: str, data: bool) -> dict:
    """One UniP (``m_new is None``) or UniC step from level ``ls`` to ``lt``: a register combination.

    ``past`` lists ``(register, level)`` of earlier outputs (most recent first); ``m0`` is the output at
    ``ls``; ``m_new`` the output at ``lt`` (corrector)."""
    h = _lam_gap(ls, lt)
    r_a = _ratio(ls, lt) if data else _noise_ratio("unipc (predict_x0=False)", ls, lt)
    if data:
        # x_t = (sigma_t/sigma_s) x + alpha_t (1 - e^{-h}) m0 - alpha_t B(h) sum rho_k D_k
        z = -h
        a = _sigma_ratio(ls, lt, r_a, h) if math.isfinite(h) else 0.0
        c0 = -lt.a * math.expm1(z) if math.isfinite(h) else lt.a
        scale = -lt.a
    else:
        # x_t = (alpha_t/alpha_s) x - sigma_t (e^h - 1) m0 - sigma_t B(h) sum rho_k D_k
        z = h
        a = r_a
        c0 = -(lt.s * math.expm1(h)) if math.isfinite(h) else -lt.a * ls.sv  # sigma_t e^h -> alpha_t sigma_ve(s)
        scale = -lt.s
    combo = lc((a, x_reg), (c0, m0))
    extra = len(past) + (m_new is not None)
    if extra == 0:
        return combo
    if not math.isfinite(h):
        raise ValueError("UniPC of order >= 2 is undefined on a step that ends at sigma = 0 (h = inf): use "
                         "lower_order_final=True, or a grid ending at sigma_min")
    rks = [(ls.lsv - lv.lsv) / h for _, lv in past]  # (lambda_k - lambda_s)/h
    if m_new is not None:
        rks.append(1.0)
    Brho = _unipc_rho(rks, z, bh, m_new is None)
    for (reg, _), r, br in zip(past, rks, Brho):
        combo = lc((1.0, combo), (scale * br / r, reg), (-scale * br / r, m0))  # D_k = (m_k - m0)/r_k
    if m_new is not None:
        combo = lc((1.0, combo), (scale * Brho[-1], m_new), (-scale * Brho[-1], m0))
    return combo


def _build_unipc(process, g, o):
    order = as_positive_int(o["solver_order"], "solver_order")
    bh = o["solver_type"]
    if bh not in ("bh1", "bh2"):
        raise ValueError(f"solver_type must be 'bh1' or 'bh2', got {bh!r}")
    data = bool(o["predict_x0"])
    lof = bool(o["lower_order_final"])
    use_corrector = bool(o["corrector"])
    disabled = {int(i) for i in (o["disable_corrector"] or ())}
    levels = _levels(process, g)
    n = len(g) - 1
    # slots: x (the predicted point the model is evaluated at), the corrected previous point, and the
    # previous outputs m_{i-1}, ..., m_{i-P}
    P = order
    slots = ("x", "x_corrected_prev") + tuple(f"m_prev{j}" if j > 1 else "m_prev" for j in range(1, P + 1))
    K = len(slots)
    steps = []
    prev_order = 0
    for i in range(n):
        ls, lt = levels[i], levels[i + 1]
        p = min(order, n - i) if lof else order
        p = min(p, i + 1)
        b = StepBuilder(ls.t, lt.t, K)
        f = b.stage(ls.t, {0: 1.0}, "x0" if data else "eps")
        hist = [(2 + j, levels[i - 1 - j]) for j in range(min(i, P))]  # (slot, level) of m_{i-1-j}
        note = f"UniP-{p}"
        if use_corrector and i > 0 and (i - 1) not in disabled:
            pc = prev_order
            lp = levels[i - 1]
            xc = _unipc_update(lp, ls, 1, hist[0][0], hist[1:pc], f, bh, data)
            note = f"UniC-{pc}, " + note
        else:
            xc = {0: 1.0}
        past = [(f, ls)] + hist  # outputs at t_i, t_{i-1}, ...
        b.write(0, _unipc_update(ls, lt, xc, f, past[1:p], None, bh, data) if True else None)
        b.write(1, xc)
        for j in range(P, 0, -1):  # m_prev <- f, m_prev{j} <- m_prev{j-1}
            b.write(1 + j, {f: 1.0} if j == 1 else {1 + j - 1: 1.0})
        b.note = note
        steps.append(b.build())
        prev_order = p
    return steps, slots


_UNIPC_DOC = r"""
UniPC (Zhao et al. 2023; diffusers ``UniPCMultistepScheduler``): the UniP-p predictor
``x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) m_0 - alpha_t B(h) sum_k rho_k D_k`` (data predictions;
noise predictions: ``(alpha_t/alpha_s) x_s - sigma_t (e^h - 1) m_0 - sigma_t B(h) sum_k rho_k D_k``) with
``D_k = (m_k - m_0)/r_k``, ``r_k = (lambda_{s_k} - lambda_s)/h`` over the ``p - 1`` previous outputs,
``B(h) = -h`` or ``e^{-h} - 1`` (``solver_type="bh1"``/``"bh2"``; ``h`` and ``e^h - 1`` for noise
predictions) and ``R rho = b``, ``R_{ik} = r_k^{i-1}``, ``b_i = i! z phi_{i+1}(z)/B(h)`` (``rho = 1/2`` at
order 2).  The UniC-p corrector re-does the previous step with the model output at the new point
(``r = 1``) included, and costs no evaluation: the output at the *predicted* point is used both to
correct it and for the next predictor.  Order ``min(solver_order, i + 1)`` (and ``n - i`` with
``lower_order_final``); the state is ``(x, x_corrected_prev, m_prev, ...)``."""


# ------------------------------------------------------------------------------------------------
# DEIS (Zhang & Chen 2023), the "logrho" multistep variant of diffusers
def _multistep_orders(n: int, order: int, lower_order_final: bool, final_zero: bool) -> list[int]:
    """DPM-Solver-style warm-up: order ``min(i + 1, order)``; with ``lower_order_final`` and fewer than 15
    steps the last two steps drop to orders 1 and 2; a step onto sigma = 0 is first order."""
    out = []
    for i in range(n):
        p = min(i + 1, order)
        if lower_order_final and n < 15:
            if i == n - 1:
                p = 1
            elif i == n - 2:
                p = min(p, 2)
        if i == n - 1 and final_zero:
            p = 1
        out.append(p)
    return out


def _deis_weights(rho_s: float, rho_t: float, rhos: list[float]) -> list[float]:
    r"""``int_{rho_s}^{rho_t} l_k(log rho) d rho`` for the Lagrange basis ``l_k`` through ``log rhos``.

    With ``u = log rho`` the integrand is ``l_k(u) e^u`` and, for a polynomial ``p``,
    ``int p(u) e^u du = e^u sum_m (-1)^m p^{(m)}(u)`` exactly; ``rho_t = 0`` (``u = -inf``) contributes 0."""
    u = [math.log(r) for r in rhos]
    out = []
    for k, uk in enumerate(u):
        poly = np.polynomial.Polynomial([1.0])
        for j, uj in enumerate(u):
            if j != k:
                poly = poly * np.polynomial.Polynomial([-uj, 1.0]) / (uk - uj)

        def antider(rho: float) -> float:
            if rho == 0.0:
                return 0.0
            x, total, q, sign = math.log(rho), 0.0, poly, 1.0
            while True:
                total += sign * q(x)
                if q.degree() == 0:
                    break
                q, sign = q.deriv(), -sign
            return rho * total

        out.append(antider(rho_t) - antider(rho_s))
    return out


def _build_deis(process, g, o):
    order = as_positive_int(o["solver_order"], "solver_order")
    levels = _levels(process, g)
    n = len(g) - 1
    orders = list(o["orders"]) if o["orders"] is not None else _multistep_orders(
        n, order, bool(o["lower_order_final"]), levels[-1].s == 0.0)
    if len(orders) != n or any(not 1 <= int(p) <= order for p in orders):
        raise ValueError(f"orders must list {n} step orders between 1 and solver_order = {order}, got {orders!r}")
    K = order
    slots = ("x",) + tuple("eps_prev" if j == 1 else f"eps_prev{j}" for j in range(1, K))
    steps = []
    for i in range(n):
        ls, lt = levels[i], levels[i + 1]
        p = min(int(orders[i]), i + 1)
        b = StepBuilder(ls.t, lt.t, K)
        b.note = f"order {p}"
        f = b.stage(ls.t, {0: 1.0}, "eps")
        outs = [(f, ls)] + [(j, levels[i - j]) for j in range(1, p)]
        # x_t / alpha_t = x_s / alpha_s + sum_k c_k eps_k (the probability-flow ODE in rho = sigma/alpha)
        w = _deis_weights(ls.sv, lt.sv, [lv.sv for _, lv in outs])
        combo = {0: _noise_ratio("deis", ls, lt)}
        for (reg, _), c in zip(outs, w):
            combo[reg] = combo.get(reg, 0.0) + lt.a * c
        b.write(0, combo)
        for j in range(K - 1, 0, -1):
            b.write(j, {f: 1.0} if j == 1 else {j - 1: 1.0})
        steps.append(b.build())
    return steps, slots


_DEIS_DOC = r"""
DEIS (Zhang & Chen 2023; diffusers ``DEISMultistepScheduler``, ``solver_type="logrho"``): the
probability-flow ODE ``d(x/alpha) = eps_hat d rho`` in ``rho = sigma/alpha``, with ``eps_hat``
extrapolated by the Lagrange polynomial in ``log rho`` through the last ``p`` outputs and integrated
exactly: ``x_t/alpha_t = x_s/alpha_s + sum_k eps_k int_{rho_s}^{rho_t} l_k(log rho) d rho``.  Order 1
is DDIM.  Orders ``min(i + 1, solver_order)``, lowered on the last two steps when ``lower_order_final``
and fewer than 15 steps (or given per step in ``orders``)."""


# ------------------------------------------------------------------------------------------------
# DPM-Solver singlestep (Lu et al. 2022a, 2022b; diffusers DPMSolverSinglestepScheduler)
_SINGLESTEP_ALGORITHMS = ("dpmsolver++", "dpmsolver", "sde-dpmsolver++")


def singlestep_orders(n: int, order: int, lower_order_final: bool = True, final_zero: bool = False) -> list[int]:
    """diffusers' order list: groups ``[1, 2, ..., order]``; with ``lower_order_final`` the tail is
    completed with lower orders, without it a tail shorter than a group is dropped (the list is then
    shorter than ``n``); a last step onto sigma = 0 is first order."""
    if order == 1:
        orders = [1] * n
    elif lower_order_final:
        if order == 3:
            orders = ([1, 2, 3] * (n // 3 - 1) + [1, 2] + [1]) if n % 3 == 0 else (
                [1, 2, 3] * (n // 3) + ([1] if n % 3 == 1 else [1, 2]))
        else:
            orders = [1, 2] * (n // 2 - 1) + [1, 1] if n % 2 == 0 else [1, 2] * (n // 2) + [1]
    else:
        orders = [k for k in range(1, order + 1)] * (n // order)
    if final_zero and orders:
        orders[-1] = 1
    return orders


def _singlestep_coefs(ls, lt, algo: str, solver_type: str, p: int):
    """(x coefficient, [c_0, c_1, c_2], noise std) of an order-p singlestep update from ``ls`` to ``lt``:
    ``x_t = a x_s + c_0 D_0 + c_1 D_1 (+ c_2 D_2) + nu z`` with the paper's ``D_k``."""
    h = _lam_gap(ls, lt)
    if algo == "dpmsolver":
        if not math.isfinite(h):
            raise ValueError("algorithm_type='dpmsolver' (noise predictions) has no step onto sigma = 0; use "
                             "'dpmsolver++' or final_sigmas_type='sigma_min'")
        c = [-lt.s * h * _phi(k + 1, h) for k in range(3)]
        return _noise_ratio("dpmsolver_singlestep (algorithm_type='dpmsolver')", ls, lt), c, 0.0
    sde = algo.startswith("sde")
    if not math.isfinite(h):
        if p > 1:
            raise ValueError("a singlestep update of order >= 2 onto sigma = 0 is undefined (h = inf)")
        return 0.0, [lt.a, 0.0, 0.0], 0.0
    H = 2.0 * h if sde else h
    a = _sigma_ratio(ls, lt, _ratio(ls, lt), h) * (math.exp(-h) if sde else 1.0)  # (sigma_t/sigma_s) e^{-h eta}
    c = [lt.a * H * _phi(k + 1, -H) for k in range(3)]
    nu = lt.s * math.sqrt(-math.expm1(-2.0 * h)) if sde else 0.0
    return a, c, nu


def _build_singlestep(process, g, o):
    order = as_positive_int(o["solver_order"], "solver_order")
    if order > 3:
        raise ValueError(f"solver_order must be 1, 2 or 3, got {order}")
    algo, solver_type = o["algorithm_type"], o["solver_type"]
    if algo not in _SINGLESTEP_ALGORITHMS:
        raise ValueError(f"algorithm_type must be one of {_SINGLESTEP_ALGORITHMS}, got {algo!r}")
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    levels = _levels(process, g)
    n = len(g) - 1
    orders = list(o["orders"]) if o["orders"] is not None else singlestep_orders(
        n, order, bool(o["lower_order_final"]), levels[-1].s == 0.0)
    if len(orders) != n:
        raise ValueError(f"the order list has {len(orders)} entries for {n} steps (diffusers' rule with "
                         f"lower_order_final=False drops a tail shorter than solver_order = {order}); use "
                         "lower_order_final=True or a number of steps divisible by solver_order")
    data = algo != "dpmsolver"
    K = 2 + (order - 1)
    slots = ("x", "x_start") + tuple("m_prev" if j == 1 else f"m_prev{j}" for j in range(1, order))
    steps = []
    k_prev = 0
    for i in range(n):
        p = int(orders[i])
        if not 1 <= p <= min(order, i + 1) or (p > 1 and p != k_prev + 1):
            raise ValueError(f"orders[{i}] = {p}: a singlestep group runs orders 1, 2, ... from its start")
        lt = levels[i + 1]
        ls0 = levels[i - p + 1]  # group start
        b = StepBuilder(levels[i].t, lt.t, K)
        b.note = f"order {p}"
        f = b.stage(levels[i].t, {0: 1.0}, "x0" if data else "eps")
        a, c, nu = _singlestep_coefs(ls0, lt, algo, solver_type, p)
        start = 0 if p == 1 else 1
        m = [f] + [1 + j for j in range(1, p)]  # outputs at t_i, t_{i-1}, ... (most recent first)
        sign = 1.0
        if p == 1:
            D = [{m[0]: 1.0}]
            cs = [c[0]]
        else:
            h = _lam_gap(ls0, lt)
            lam = [(ls0.lsv - levels[i - j].lsv) / h for j in range(p)]  # r for outputs m[0..p-1]
            if p == 2:
                r0 = lam[0]
                D = [{m[1]: 1.0}, {m[0]: 1.0 / r0, m[1]: -1.0 / r0}]
                cs = [c[0], 0.5 * c[0] if solver_type == "midpoint" else c[1]]
            else:
                r0, r1 = lam[0], lam[1]  # outputs at t_i (s0) and t_{i-1} (s1); m[2] is the group start
                d10 = {m[1]: 1.0 / r1, m[2]: -1.0 / r1}
                d11 = {m[0]: 1.0 / r0, m[2]: -1.0 / r0}
                if solver_type == "midpoint":
                    D = [{m[2]: 1.0}, d11]
                    cs = [c[0], c[1]]
                else:
                    D1 = lc((r0 / (r0 - r1), d10), (-r1 / (r0 - r1), d11))
                    D2 = lc((2.0 / (r0 - r1), d11), (-2.0 / (r0 - r1), d10))
                    D = [{m[2]: 1.0}, D1, D2]
                    cs = [c[0], c[1], c[2]]
        combo = {start: a}
        for ck, Dk in zip(cs, D):
            combo = lc((1.0, combo), (sign * ck, Dk))
        if nu:
            combo[b.noise()] = nu
        b.write(0, combo)
        b.write(1, {0: 1.0} if p == 1 else {1: 1.0})
        for j in range(order - 1, 0, -1):
            b.write(1 + j, {f: 1.0} if j == 1 else {j: 1.0})
        steps.append(b.build())
        k_prev = p
    return steps, slots


_SINGLESTEP_DOC = r"""
DPM-Solver singlestep (Lu et al. 2022a Alg. 1-2, 2022b; diffusers ``DPMSolverSinglestepScheduler``):
grid steps are grouped ``[1, 2, ..., solver_order]``; the step of order ``p`` in a group goes from the
group's start ``s`` to ``t`` using the outputs at the group's first ``p`` points:
``x_t = a x_s + sum_k c_k D_k`` with ``D_0 = m(s)``, ``D_1 = (m(s_1) - m(s))/r_1`` (order 2), and at
order 3 ``D_1 = (r_0 D_{1,0} - r_1 D_{1,1})/(r_0 - r_1)``, ``D_2 = 2 (D_{1,1} - D_{1,0})/(r_0 - r_1)``
(``r = (lambda - lambda_s)/h``); data predictions (``"dpmsolver++"``): ``a = sigma_t/sigma_s``,
``c_k = alpha_t h phi_{k+1}(-h)``; ``"sde-dpmsolver++"``: ``a = (sigma_t/sigma_s) e^{-h}``, ``c_k = alpha_t
2h phi_{k+1}(-2h)``, plus ``sigma_t sqrt(1 - e^{-2h}) z``; noise predictions (``"dpmsolver"``):
``a = alpha_t/alpha_s``, ``c_k = -sigma_t h phi_{k+1}(h)``.  ``solver_type="midpoint"`` uses ``c_0/2`` on
``D_1`` at order 2 and ``D_{1,1}`` alone at order 3.  Orders per step: diffusers' list (``orders``)."""


# ------------------------------------------------------------------------------------------------
# PNDM (Liu et al. 2022): pseudo linear multistep with a pseudo Runge-Kutta or pseudo Heun warm-up
def _transfer(ls, lt, x: dict, e: dict) -> dict:
    """Liu et al.'s transfer ``phi(x, eps, s, t)`` (their eq. 9), which is the DDIM step:
    ``x_t = (alpha_t/alpha_s) x + (sigma_t - sigma_s alpha_t/alpha_s) eps`` (a noise-prediction step: its
    ratio is bounded, see ``lindiff.samplers._NOISE_RATIO_MAX``)."""
    r = _noise_ratio("pndm / tcd (the DDIM transfer of noise predictions)", ls, lt)
    return lc((r, x), (lt.s - ls.s * r, e))


_AB = {1: (1.0,), 2: (1.5, -0.5), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}
"""Adams-Bashforth weights on eps at the current and previous steps (most recent first)."""


def _pndm_midpoint(process, t: float, t_next: float) -> float:
    """The pseudo Runge-Kutta half step: ``(t + t_next)/2``; on a DDPM process the trained step
    ``t_next + floor((t - t_next)/2)`` (the model is only defined at integer steps)."""
    if process.discrete:
        return float(t_next + (int(t) - int(t_next)) // 2)
    return 0.5 * (t + t_next)


def _build_pndm(process, g, o):
    from .samplers import _Level

    warmup = o["warmup"]
    if warmup not in ("prk", "heun"):
        raise ValueError(f"warmup must be 'prk' (pseudo Runge-Kutta, Liu et al.) or 'heun' (diffusers "
                         f"skip_prk_steps), got {warmup!r}")
    levels = _levels(process, g)
    n = len(g) - 1
    slots = ("x", "eps_prev", "eps_prev2", "eps_prev3")
    steps = []
    stored = 0  # eps values in the history
    for i in range(n):
        ls, lt = levels[i], levels[i + 1]
        b = StepBuilder(ls.t, lt.t, 4)
        e0 = b.stage(ls.t, {0: 1.0}, "eps")
        if warmup == "prk" and i < 3:
            lm = _Level(process, _pndm_midpoint(process, ls.t, lt.t))
            x1 = _transfer(ls, lm, {0: 1.0}, {e0: 1.0})
            e1 = b.stage(lm.t, x1, "eps")
            x2 = _transfer(ls, lm, {0: 1.0}, {e1: 1.0})
            e2 = b.stage(lm.t, x2, "eps")
            x3 = _transfer(ls, lt, {0: 1.0}, {e2: 1.0})
            e3 = b.stage(lt.t, x3, "eps")
            ebar = {e0: 1 / 6, e1: 1 / 3, e2: 1 / 3, e3: 1 / 6}
            b.note = "pseudo Runge-Kutta"
        elif warmup == "heun" and i == 0:
            xp = _transfer(ls, lt, {0: 1.0}, {e0: 1.0})
            e1 = b.stage(lt.t, xp, "eps")
            ebar = {e0: 0.5, e1: 0.5}
            b.note = "pseudo Heun"
        else:
            k = min(stored + 1, 4)
            w = _AB[k]
            ebar = {e0: w[0]}
            for j in range(1, k):
                ebar[j] = ebar.get(j, 0.0) + w[j]
            b.note = f"PLMS-{k}"
        b.write(0, _transfer(ls, lt, {0: 1.0}, ebar))
        b.write(1, {e0: 1.0})
        b.write(2, {1: 1.0})
        b.write(3, {2: 1.0})
        stored += 1
        steps.append(b.build())
    return steps, slots


_PNDM_DOC = r"""
PNDM (Liu et al. 2022, "Pseudo numerical methods for diffusion models on manifolds"; diffusers
``PNDMScheduler``): the transfer ``phi(x, eps, s, t)`` of their eq. (9), which equals the DDIM step, is
driven by an Adams-Bashforth combination of the noise predictions (PLMS, eq. 12:
``(55 e_0 - 59 e_1 + 37 e_2 - 9 e_3)/24``, lower orders while the history fills).  Warm-up
``"prk"``: three pseudo fourth-order Runge-Kutta steps (eq. 13; half steps at ``(t + t')/2``, on DDPM
at the trained step ``t' + floor((t - t')/2)``); ``"heun"`` (diffusers ``skip_prk_steps=True``): a
pseudo improved-Euler first step, then AB2, AB3, AB4.  The state is ``(x, e_1, e_2, e_3)``."""


# ------------------------------------------------------------------------------------------------
# Latent consistency models (Luo et al. 2023) and trajectory consistency distillation (Zheng et al. 2024)
def _needs_ddpm(process, name: str) -> None:
    if not process.discrete:
        raise ValueError(f"{name!r} is defined on a DDPM process (its boundary condition and its intermediate "
                         "times are trained integer steps)")


def _build_lcm(process, g, o):
    _needs_ddpm(process, "lcm")
    scaling = float(o["timestep_scaling"])
    sd = float(o["sigma_data"])
    levels = _levels(process, g)
    steps = []
    for i in range(len(g) - 1):
        ls, lt = levels[i], levels[i + 1]
        # boundary condition of the consistency function at diffusers' 0-based timestep t - 1
        c = (ls.t - 1.0) * scaling
        c_skip, c_out = sd * sd / (c * c + sd * sd), c / math.sqrt(c * c + sd * sd)
        b = StepBuilder(ls.t, lt.t, 1)
        f = b.stage(ls.t, {0: 1.0}, "x0")
        combo = {0: lt.a * c_skip, f: lt.a * c_out}
        if lt.s > 0:
            combo[b.noise()] = lt.s
        b.write(0, combo)
        steps.append(b.build())
    return steps, ("x",)


_LCM_DOC = r"""
Latent consistency model multistep sampling (Luo et al. 2023, Alg. 1; diffusers ``LCMScheduler``):
the consistency function ``f(x, t) = c_skip(t) x + c_out(t) x0_hat(x, t)`` with the boundary-condition
scalings ``c_skip = s_d^2/(c^2 + s_d^2)``, ``c_out = c/sqrt(c^2 + s_d^2)``, ``c = (t - 1) timestep_scaling``
(diffusers' 0-based timestep; ``s_d = sigma_data = 0.5``), then re-noised to the next step:
``x' = alpha' f + sigma' z`` (the last step, onto ``alpha = 1``, returns ``f``).  DDPM processes only."""


def _build_tcd(process, g, o):
    _needs_ddpm(process, "tcd")
    gamma = float(o["gamma"])
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma!r}")
    from .samplers import _Level

    levels = _levels(process, g)
    n = len(g) - 1
    steps = []
    for i in range(n):
        ls, lt = levels[i], levels[i + 1]
        last = i == n - 1
        # the intermediate step s = floor((1 - gamma) t'), in diffusers' 0-based timesteps
        lv = lt if (last or gamma == 0.0) else _Level(process, math.floor((1.0 - gamma) * (lt.t - 1.0)) + 1.0)
        b = StepBuilder(ls.t, lt.t, 1)
        e = b.stage(ls.t, {0: 1.0}, "eps")
        x_s = _transfer(ls, lv, {0: 1.0}, {e: 1.0})  # alpha_s x0_hat + sigma_s eps_hat
        if lv is lt:
            b.write(0, x_s)
        else:
            # forward noising from s back to t': x' = (alpha'/alpha_s) x_s + sqrt(1 - alpha_bar'/alpha_bar_s) z
            r = _ratio(lv, lt)
            b.write(0, lc((r, x_s), (math.sqrt(max(-math.expm1(2.0 * (lt.la - lv.la)), 0.0)), b.noise())))
        b.note = f"via step {lv.t:g}"
        steps.append(b.build())
    return steps, ("x",)


_TCD_DOC = r"""
Trajectory consistency distillation's strategic stochastic sampling (Zheng et al. 2024, Alg. 4;
diffusers ``TCDScheduler`` with ``eta = gamma``): from ``t`` to ``t'`` go by DDIM to the earlier step
``s = floor((1 - gamma) t')`` (diffusers' 0-based steps), ``x_s = alpha_s x0_hat + sigma_s eps_hat``, then
noise forward to ``t'``: ``x' = (alpha'/alpha_s) x_s + sqrt(1 - alpha_bar'/alpha_bar_s) z``; the last step
(and ``gamma = 0``) is the DDIM step.  DDPM processes only."""


# ------------------------------------------------------------------------------------------------
def register(reg) -> None:
    """Register this module's samplers with ``reg(name, doc, build, options, ...)`` (lindiff.samplers)."""
    reg("unipc", _UNIPC_DOC, _build_unipc,
        {"solver_order": 2, "solver_type": "bh2", "predict_x0": True, "lower_order_final": True, "corrector": True,
         "disable_corrector": ()})
    reg("pndm", _PNDM_DOC, _build_pndm, {"warmup": "prk"})
    reg("lcm", _LCM_DOC, _build_lcm, {"timestep_scaling": 10.0, "sigma_data": 0.5})
    reg("tcd", _TCD_DOC, _build_tcd, {"gamma": 0.3})
    reg("deis", _DEIS_DOC, _build_deis, {"solver_order": 2, "lower_order_final": True, "orders": None})
    reg("dpmsolver_singlestep", _SINGLESTEP_DOC, _build_singlestep,
        {"solver_order": 2, "algorithm_type": "dpmsolver++", "solver_type": "midpoint", "lower_order_final": True,
         "orders": None})
