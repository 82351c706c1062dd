"""A small, independent DDPM/DDIM implementation written from the papers (Ho et al. 2020 eq. 11; Song
et al. 2021 eq. 12) in diffusers' conventions (0-based timesteps, alphas_cumprod table), with seeded
bugs for the mutation check of lindiff.testing.

``make_loop(betas, kind, steps, spacing, bug)`` returns ``run(x_T, eps_model, noise)`` where eps_model
takes lindiff's 1-based DDPM step.
"""

import numpy as np

BUGS = (
    "off_by_one_timestep",      # model evaluated at the previous timestep
    "wrong_variance",           # beta_tilde instead of beta (ddpm) / eta variance without sqrt (ddim)
    "missing_sqrt",             # 1/alpha_t instead of 1/sqrt(alpha_t)
    "noise_on_last_step",       # ddpm adds noise at t = 0
    "float32_cumprod",          # alphas_cumprod accumulated in float32
    "eps_coefficient",          # sqrt(alpha_bar) where sqrt(1 - alpha_bar) belongs
    "beta_index",               # betas[t + 1] instead of betas[t]
    "one_minus_alpha_bar",      # 1 - alpha_bar_t in place of beta_t in the mean
    "final_alpha_not_one",      # last step goes to alpha_bar[0] instead of 1 (set_alpha_to_one=False)
    "ddim_prev_timestep",       # prev = t - T // n (diffusers#11347 with linspace spacing)
    "clip_x0",                  # x0 prediction clipped to [-1, 1] (nonlinear)
    "skip_beta_ignored",        # skip-step beta replaced by the single-step beta
)


def timesteps(T, steps, spacing):
    if steps is None:
        return np.arange(T - 1, -1, -1)
    if spacing == "leading":
        return (np.arange(steps) * (T // steps))[::-1]
    if spacing == "trailing":  # diffusers' round(arange(T, 0, -T/n)) - 1, its first n entries
        delta = (T + (-T / steps)) - T
        return (np.round(T + np.arange(steps) * delta) - 1).astype(int)
    return np.round(np.linspace(0, T - 1, steps))[::-1].astype(int)


def make_loop(betas, kind="ddpm", steps=None, spacing="leading", bug=None, eta=0.0, dtype=np.float64):
    """``dtype`` is the precision the loop computes in (its tables, its points, the model's outputs)."""
    betas = np.asarray(betas, dtype=np.float64)
    T = betas.size
    if bug == "float32_cumprod":
        acp = np.cumprod((1 - betas).astype(np.float32)).astype(np.float64)
    else:
        acp = np.cumprod(1 - betas)
    acp = acp.astype(dtype)
    ts = timesteps(T, steps, spacing)
    if bug == "ddim_prev_timestep" and kind == "ddim":
        prevs = [t - T // len(ts) for t in ts]
    else:
        prevs = list(ts[1:]) + [-1]

    def run(x, eps_model, noise):
        x = np.array(x, dtype=dtype)
        model, draw = eps_model, noise
        if dtype != np.float64:
            def eps_model(y, t):  # noqa: E306 - the model as a low-precision network would return it
                return np.asarray(model(y, t), dtype=dtype)

            def noise(shape):  # noqa: E306
                return np.asarray(draw(shape), dtype=dtype)
        for i, (t, prev) in enumerate(zip(ts, prevs)):
            a_t = acp[t]
            a_prev = acp[prev] if prev >= 0 else (acp[0] if bug == "final_alpha_not_one" else dtype(1.0))
            t_model = t if bug != "off_by_one_timestep" else max(t - 1, 0)
            eps = eps_model(x, int(t_model) + 1)
            if kind == "ddpm":
                beta = 1 - a_t / a_prev
                if bug == "skip_beta_ignored":
                    beta = dtype(betas[t])
                if bug == "beta_index":
                    beta = dtype(betas[min(t + 1, T - 1)])
                coef = beta if bug != "one_minus_alpha_bar" else 1 - a_t
                denom = np.sqrt(1 - a_t) if bug != "eps_coefficient" else np.sqrt(a_t)
                scale = 1 / np.sqrt(1 - beta) if bug != "missing_sqrt" else 1 / (1 - beta)
                if bug == "clip_x0":
                    x0 = np.clip((x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t), -1, 1)
                    mean = (np.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (np.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t)) * x
                else:
                    mean = scale * (x - coef / denom * eps)
                var = beta if bug != "wrong_variance" else (1 - a_prev) / (1 - a_t) * beta
                if t > 0 or bug == "noise_on_last_step":
                    mean = mean + np.sqrt(var) * noise(x.shape)
                x = mean.astype(dtype)
            else:
                sig = eta * np.sqrt((1 - a_prev) / (1 - a_t)) * np.sqrt(1 - a_t / a_prev)
                if bug == "wrong_variance":
                    sig = eta * ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)
                denom = np.sqrt(1 - a_t) if bug != "eps_coefficient" else np.sqrt(a_t)
                x0 = (x - denom * eps) / (np.sqrt(a_t) if bug != "missing_sqrt" else a_t)
                if bug == "clip_x0":
                    x0 = np.clip(x0, -1, 1)
                x = np.sqrt(a_prev) * x0 + np.sqrt(max(1 - a_prev - sig**2, 0.0)) * eps
                if sig > 0:
                    x = x + sig * noise(x.shape)
                elif bug == "noise_on_last_step" and i == len(ts) - 1:
                    x = x + np.sqrt(1 - a_t / a_prev) * noise(x.shape)
                x = x.astype(dtype)
        return np.asarray(x, dtype=np.float64)

    return run
