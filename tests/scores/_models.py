"""Score models with closed-form answers and instrumented wrappers, for the score-kind tests."""
import torch

from curate.sde import VP


class GaussianSubspace:
    """Data x = U z, z ~ N(0, I_d), U (D, d) orthonormal columns: a d-dimensional linear subspace.

    p_t = N(0, Sigma_t) with Sigma_t = alpha^2 U U^T + v I, so
    s(x, t) = -Sigma_t^{-1} x = -[P / (alpha^2 + v) + (I - P) / v] x  (P = U U^T) and
    eps = -sigma s. Only ``eps``: the scores must differentiate it themselves.
    """

    def __init__(self, U: torch.Tensor, shape):
        self.U = U.to(torch.float64)
        self.shape = tuple(shape)
        self.D, self.d = U.shape

    def parts(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return VP.alpha(t) ** 2, VP.v(t)

    def eps(self, x, t):
        a2, v = self.parts(t.reshape(-1, 1).to(torch.float64))
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        proj = (flat @ self.U) @ self.U.T
        out = VP.sigma(t.reshape(-1, 1).to(torch.float64)) * (proj / (a2 + v) + (flat - proj) / v)
        return out.to(x.dtype).reshape(x.shape)


class GaussianSubspaceWithDivergence(GaussianSubspace):
    """The same model with its closed-form div s = -(d / (alpha^2 + v) + (D - d) / v)."""

    def divergence(self, x, t):
        a2, v = self.parts(t.to(torch.float64))
        return -(self.d / (a2 + v) + (self.D - self.d) / v)


class EpsOnly:
    """Hide every extra of a model (its closed-form divergence, dtype, device): only ``eps``."""

    def __init__(self, model):
        self.model = model

    def eps(self, x, t):
        return self.model.eps(x, t)


class Counting(EpsOnly):
    """Counts the rows (network evaluations) passed to ``eps``; a JVP's rows count once."""

    def __init__(self, model):
        super().__init__(model)
        self.rows = 0

    def eps(self, x, t):
        self.rows += x.shape[0]
        return self.model.eps(x, t)


class CountingWithDivergence(Counting):
    """Counting, and the wrapped model's closed-form divergence (which is no network evaluation)."""

    def divergence(self, x, t):
        return self.model.divergence(x, t)


def random_images(n, shape=(3, 4, 4), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g, dtype=dtype) * 2 - 1
