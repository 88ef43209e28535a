"""Score models with closed-form answers, for tests (docs/design.md, section 5)."""
import torch

from curate.sde import VP as sde


class GaussianScore:
    """Data ~ N(0, c^2 I): s(x, t) = -x / S(t), S = alpha^2 c^2 + v.

    A plain class with only ``eps``: it also checks that the tracker needs nothing else.
    """

    def __init__(self, c: float):
        self.c = c

    def S(self, t):
        return sde.alpha(t) ** 2 * self.c**2 + sde.v(t)

    def eps(self, x, t):
        shape = (-1,) + (1,) * (x.dim() - 1)
        return sde.sigma(t).reshape(shape) * x / self.S(t).reshape(shape)


def euler_growth(multiplier, t_min, steps):
    """sum_k log|1 + dt * g(t_k)| for a linear drift f = g(t) x, as float64."""
    t = sde.time_grid(steps, t_min)
    return torch.log(torch.abs(1 + sde.dt * multiplier(t))).sum().item()
