"""Figures (matplotlib, optional extra ``lindiff[plot]``)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["plot_transition", "plot_stability", "plot_variance"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("plots need matplotlib: pip install 'lindiff[plot]'") from exc
    return plt


def _mean_err(values):
    values = [np.nan if v is None else v for v in values]  # None: a value that does not apply (blank)
    m = np.array([v[0] if isinstance(v, tuple) else float(v) for v in values])
    e = np.array([v[1] if isinstance(v, tuple) else 0.0 for v in values])
    m = np.where(np.isfinite(m), m, np.nan)
    return m, e


def plot_transition(result, path: str) -> str:
    """KL per dimension (exact and Monte Carlo) and train/test losses against N/d; writes ``path``."""
    plt = _pyplot()
    x = np.asarray(result.ratios)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, direction, colour, label in (("fit_m2d", "model_to_data", "C0", "KL(fit || data)"),
                                          ("fit_d2m", "data_to_model", "C1", "KL(data || fit)")):
        exact = np.array([v if v is not None and math.isfinite(v) else np.nan for v in result.exact(direction)])
        ax1.plot(x, exact, "-", color=colour, label=f"E {label} (exact)")
        m, e = _mean_err(result.summary(key))
        ax1.errorbar(x, m, yerr=e, fmt="o", color=colour, ms=4, label=f"{label} (Monte Carlo)")
    for key, colour, label in (("law_m2d", "C2", "KL(sampler law || data)"), ("law_d2m", "C3", "KL(data || sampler law)")):
        m, e = _mean_err(result.summary(key))
        ax1.errorbar(x, m, yerr=e, fmt="s--", color=colour, ms=4, label=label)
    ax1.plot(x, 1 / (4 * x * result.d) * result.d, "k:", label="d/(4N)")
    ax1.axvline(1.0, color="grey", lw=0.8)
    ax1.set(xscale="log", yscale="log", xlabel="N / d", ylabel="KL per dimension (nats)",
            title=f"d = {result.d}, {result.repeats} training sets per N")
    ax1.legend(fontsize=7)
    for key, colour in (("train", "C0"), ("test", "C1"), ("gap", "C3")):
        m, e = _mean_err(result.summary(key))
        ax2.errorbar(x, m, yerr=e, fmt="o-", color=colour, ms=4, label=f"{key} loss" if key != "gap" else "gap")
    ax2.axvline(1.0, color="grey", lw=0.8)
    ax2.set(xscale="log", yscale="log", xlabel="N / d", ylabel="DSM loss per dimension (time-averaged)",
            title="training vs test loss")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_stability(per_time, integrated, path: str) -> str:
    """Expected gap vs bound against t (per N) and the integrated gap against eps; writes ``path``.

    Takes the tables of :func:`lindiff.stability.stability_table` and :func:`~lindiff.stability.integrated_table`
    (columns found by name); error bars are the tables' standard errors."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    recs = per_time.to_records()
    for k, N in enumerate(sorted({r["N"] for r in recs})):
        rows = [r for r in recs if r["N"] == N]
        t = [r["t"] for r in rows]
        m, e = _mean_err([r["replace-one"] for r in rows])
        ax1.errorbar(t, m, yerr=e, fmt="o-", color=f"C{k}", label=f"E gap, N={N}")
        m, e = _mean_err([r["bound"] for r in rows])
        ax1.errorbar(t, m, yerr=e, fmt="s--", color=f"C{k}", label=f"bound, N={N}")
    ax1.set(xscale="log", yscale="log", xlabel="t", ylabel="score units", title="expected gap vs stability bound")
    ax1.legend(fontsize=7)
    recs = integrated.to_records()
    for k, N in enumerate(sorted({r["N"] for r in recs})):
        rows = [r for r in recs if r["N"] == N]
        m, e = _mean_err([r["int gap"] for r in rows])
        ax2.errorbar([r["eps"] for r in rows], m, yerr=e, fmt="o-", color=f"C{k}", label=f"N={N}")
    ax2.set(xscale="log", yscale="log", xlabel="eps (forward-process early stopping)", ylabel="integrated gap",
            title="denoising regularisation")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_variance(table, path: str) -> str:
    """Off-span variance (Monte Carlo ± s.e. and the 1/P series) and E KL(data || law) against P, one
    curve per (N/d, ridge); the P = infinity values as dashed lines.  Takes
    :func:`lindiff.variance.variance_table`; writes ``path``."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    recs = table.to_records()
    groups = sorted({(r["N/d"], r["ridge"]) for r in recs})
    for k, (ratio, ridge) in enumerate(groups):
        rows = [r for r in recs if r["N/d"] == ratio and r["ridge"] == ridge]
        fin = [r for r in rows if r["P"] != "inf"]
        inf = [r for r in rows if r["P"] == "inf"]
        P = np.array([r["P"] for r in fin], float)
        colour, label = f"C{k}", f"N/d={ratio:g}, ridge {ridge:g}"
        m, e = _mean_err([r["off-span var"] for r in fin])
        m = np.where(m > 0, m, np.nan)  # exact zeros cannot sit on a log axis
        ax1.errorbar(P, m, yerr=e, fmt="o", color=colour, ms=4, label=label)
        ser = [(p, r["series"]) for p, r in zip(P, fin) if r["series"] is not None and r["series"] > 0]
        if ser:
            ax1.plot(*zip(*ser), "-", color=colour, lw=1)
        if inf and _mean_err([inf[0]["off-span var"]])[0][0] > 0:
            ax1.axhline(_mean_err([inf[0]["off-span var"]])[0][0], color=colour, ls="--", lw=0.8)
        kl = [r["E KL(data||law)"] for r in fin]
        m, e = _mean_err(kl)
        ax2.errorbar(P, m, yerr=e, fmt="o-", color=colour, ms=4, label=label)
    ax1.set(xscale="log", yscale="log", xlabel="noise draws per training point P",
            ylabel="off-span variance E||P_perp(x - xbar)||^2", title="variance off the training span (line: c0 + c1/P)")
    ax1.legend(fontsize=7)
    ax2.set(xscale="log", yscale="log", xlabel="P", ylabel="E KL(data || law) (nats)", title="distance to the data")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
