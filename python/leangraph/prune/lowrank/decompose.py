"""One decomposition per layer kind: what it costs, how well it fits, and its new layers.

- `DenseSVD`: a Dense layer x W + b (W is C_in x C_out) becomes Dense(r) then
  Dense(C_out): W ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T), the truncated SVD.
- `PointwiseSVD`: the same for a 1x1 Conv2D; the stride goes on the first
  conv, so the second reads the already subsampled, narrower tensor.
- `Tucker2`: a k x k Conv2D (C_in -> C_out) becomes 1x1 (C_in -> r_in),
  k x k (r_in -> r_out) with the original strides, padding and dilation, then
  1x1 (r_out -> C_out) with the bias and activation. The two 1x1 kernels are
  the leading left singular vectors of the kernel unfolded along its input and
  its output channels (HOSVD); the core is the kernel projected onto both.
  Zero padding commutes with a bias-free 1x1 map, so at full rank the sandwich
  computes the original conv exactly.

Rank candidates come from the retained energy (share of the squared singular
values) and from EVBMF, Nakajima et al.'s empirical variational Bayes estimate
of the rank of a noisy matrix, written here in numpy.
"""

import math

import numpy as np

from leangraph.errors import PruneError

ENERGIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def _tau(x, alpha):
    """The posterior's signal-to-noise ratio of a kept component (EVBMF)."""
    b = x - (1.0 + alpha)
    return 0.5 * (b + np.sqrt(np.maximum(b * b - 4.0 * alpha, 0.0)))


def evbmf_rank(matrix, grid=400):
    """The number of components EVBMF keeps for `matrix`, its noise variance unknown.

    With L <= M its sides and x_h = s_h^2 / (M sigma^2), a component survives
    when x_h exceeds (1 + t)(1 + alpha / t), alpha = L / M and t = 2.5129
    sqrt(alpha) (the constant from Nakajima et al. 2013). sigma^2 minimizes
    the free energy, searched here on a log grid between the paper's bounds.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape[0] > matrix.shape[1]:
        matrix = matrix.T
    size_l, size_m = matrix.shape
    s = np.linalg.svd(matrix, compute_uv=False)
    if s.size == 0 or s[0] <= 0:
        return 0
    alpha = size_l / size_m
    t = 2.5129 * math.sqrt(alpha)
    x_bar = (1.0 + t) * (1.0 + alpha / t)
    total = float(np.sum(s * s))
    upper = total / (size_l * size_m)
    k = max(0, min(int(math.ceil(size_l / (1.0 + alpha))) - 1, len(s)) - 1)
    lower = max(s[k] ** 2 / (size_m * x_bar), float(np.mean(s[k:] ** 2)) / size_m, 1e-30)
    if not lower < upper:
        lower = upper * 1e-6

    def free_energy(sigma2):
        x = s * s / (size_m * sigma2)
        kept = x > x_bar
        tau = _tau(x[kept], alpha)
        value = np.sum(x[~kept] - np.log(x[~kept]))
        value += np.sum(x[kept] - np.log(x[kept]) + np.log(tau + 1.0)
                        + alpha * np.log(tau / alpha + 1.0) - tau)
        return value

    candidates = np.geomspace(lower, upper, grid)
    values = [free_energy(c) for c in candidates]
    sigma2 = candidates[int(np.argmin(values))]
    return int(np.sum(s > math.sqrt(size_m * sigma2 * x_bar)))


def energy_rank(singular, share):
    """The least rank whose squared singular values hold `share` of the total."""
    power = np.cumsum(np.asarray(singular, dtype=np.float64) ** 2)
    if power[-1] <= 0:
        return 1
    return int(np.searchsorted(power / power[-1], share - 1e-12) + 1)


def retained(singular, rank):
    power = np.asarray(singular, dtype=np.float64) ** 2
    return float(power[:rank].sum() / power.sum()) if power.sum() > 0 else 1.0


def round_up(rank, full, multiple):
    """`rank` up to a whole multiple (which CPU kernels favour) where the layer is wide enough."""
    if multiple > 1 and full >= 2 * multiple:
        rank = int(math.ceil(rank / multiple)) * multiple
    return max(1, min(full, rank))


def _add(found, rank, energy, source):
    """One candidate per rank; every rule that proposed it is named."""
    if rank in found:
        found[rank] = (rank, energy, found[rank][2] + ", " + source)
    else:
        found[rank] = (rank, energy, source)


class Decomposition:
    """A layer's decomposition. Subclasses set `kind` and compute the factors once."""

    kind = ""

    def __init__(self, layer):
        self.layer = layer
        self.name = layer.name
        self.config = layer.get_config()
        self.kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
        self.bias = layer.bias.numpy() if self.config.get("use_bias") else None

    # -- what subclasses give ---------------------------------------------

    def full_rank(self):
        raise NotImplementedError

    def approximation(self, rank):
        """The kernel the factors of `rank` multiply back to (same shape as the kernel)."""
        raise NotImplementedError

    def new_layers(self, rank, names):
        """[(Keras layer, [weights])] in call order; the last keeps the original's name."""
        raise NotImplementedError

    def macs(self, rank, in_shape, out_shape):
        raise NotImplementedError

    def candidates(self, energies=ENERGIES, multiple=8, in_shape=None, out_shape=None):
        """[(rank, retained energy, source)] that do fewer MACs, cheapest first."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------

    def check_rank(self, rank):
        """`rank` as this decomposition takes it, or a one-line PruneError."""
        full = self.full_rank()
        shape = f"{type(self.layer).__name__} {self.describe()}"
        if isinstance(full, tuple):
            if (not isinstance(rank, (tuple, list)) or len(rank) != 2
                    or not all(isinstance(r, (int, np.integer)) for r in rank)):
                raise PruneError(f"layer '{self.name}' ({shape}) takes a Tucker-2 rank "
                                 f"(r_in, r_out); got {rank!r}")
            rank = tuple(int(r) for r in rank)
            if any(r > f for r, f in zip(rank, full)):
                raise PruneError(f"rank {rank} for layer '{self.name}' ({shape}) is above its "
                                 f"full rank {full}")
            if min(rank) < 1:
                raise PruneError(f"rank {rank} for layer '{self.name}' ({shape}) is below 1")
            return rank
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
            raise PruneError(f"layer '{self.name}' ({shape}) takes one integer rank; got {rank!r}")
        if rank > full:
            raise PruneError(f"rank {rank} for layer '{self.name}' ({shape}) is above its full "
                             f"rank {full}")
        if rank < 1:
            raise PruneError(f"rank {rank} for layer '{self.name}' ({shape}) is below 1")
        return int(rank)

    def describe(self):
        return f"{self.kernel.shape[-2]}->{self.kernel.shape[-1]}"

    def response(self, x, kernel):
        """The layer's linear part (no bias, no activation) on `x` with another `kernel`."""
        from keras import ops

        c = self.config
        out = ops.conv(x, kernel.astype(np.float32), strides=c["strides"], padding=c["padding"],
                       data_format=c["data_format"], dilation_rate=c["dilation_rate"])
        return np.asarray(out)

    def _config(self, **changes):
        """The original layer's config with `changes`: regularizers, dtype and format stay."""
        config = dict(self.config)
        config.update(changes)
        return config

    def _first(self, cls, name, **changes):
        """A bias-free, linear layer of `cls` in the original's dtype policy."""
        config = {"name": name, "dtype": self.config.get("dtype"), "use_bias": False,
                  "activation": None, **changes}
        return cls(**config)


class _Matrix(Decomposition):
    """Dense and 1x1 conv: one matrix, C_in x C_out, and its SVD."""

    def __init__(self, layer):
        super().__init__(layer)
        matrix = self.kernel.reshape(self.kernel.shape[-2], self.kernel.shape[-1])
        self.u, self.s, self.vt = np.linalg.svd(matrix, full_matrices=False)

    def full_rank(self):
        return int(len(self.s))

    def factors(self, rank):
        root = np.sqrt(self.s[:rank])
        first = self.u[:, :rank] * root
        second = root[:, None] * self.vt[:rank]
        return first.astype(np.float32), second.astype(np.float32)

    def approximation(self, rank):
        first, second = self.factors(rank)
        return (first.astype(np.float64) @ second).reshape(self.kernel.shape)

    def candidates(self, energies=ENERGIES, multiple=8, in_shape=None, out_shape=None):
        """[(rank, retained energy, source)], ranks that do fewer MACs than the layer."""
        c_in, c_out = self.kernel.shape[-2], self.kernel.shape[-1]
        full = self.full_rank()
        found = {}
        proposals = [(energy_rank(self.s, e), f"energy {e:g}") for e in energies]
        proposals.append((evbmf_rank(self.kernel.reshape(c_in, c_out)), "evbmf"))
        for raw, source in proposals:
            rank = round_up(max(1, raw), full, multiple)
            if rank * (c_in + c_out) >= c_in * c_out or rank >= full:
                continue  # does not save work
            _add(found, rank, retained(self.s, rank), source)
        return sorted(found.values())

    def macs(self, rank, in_shape, out_shape):
        spatial = int(np.prod([d or 1 for d in out_shape[1:-1]], dtype=np.int64))
        c_in, c_out = self.kernel.shape[-2], self.kernel.shape[-1]
        if rank is None:
            return spatial * c_in * c_out
        return spatial * rank * (c_in + c_out)


class DenseSVD(_Matrix):
    kind = "dense"

    def response(self, x, kernel):
        return np.tensordot(x, kernel.astype(np.float32), axes=[[-1], [0]])

    def new_layers(self, rank, names):
        from keras import layers

        first, second = self.factors(rank)
        inner = self._first(layers.Dense, names[0], units=rank)
        outer = layers.Dense.from_config(self._config())
        weights = [second] + ([self.bias] if self.bias is not None else [])
        return [(inner, [first]), (outer, weights)]


class PointwiseSVD(_Matrix):
    kind = "conv1x1"

    def new_layers(self, rank, names):
        from keras import layers

        first, second = self.factors(rank)
        c = self.config
        inner = self._first(layers.Conv2D, names[0], filters=rank, kernel_size=(1, 1),
                            strides=c["strides"], padding=c["padding"],
                            data_format=c["data_format"], dilation_rate=c["dilation_rate"])
        outer = layers.Conv2D.from_config(self._config(strides=(1, 1), padding="valid",
                                                       dilation_rate=(1, 1)))
        weights = [second[None, None]] + ([self.bias] if self.bias is not None else [])
        return [(inner, [first[None, None]]), (outer, weights)]


class Tucker2(Decomposition):
    kind = "conv_tucker2"

    def __init__(self, layer):
        super().__init__(layer)
        k = self.kernel
        h, w, c_in, c_out = k.shape
        self.u_in, self.s_in, _ = np.linalg.svd(k.transpose(2, 0, 1, 3).reshape(c_in, -1),
                                                full_matrices=False)
        self.u_out, self.s_out, _ = np.linalg.svd(k.transpose(3, 0, 1, 2).reshape(c_out, -1),
                                                  full_matrices=False)

    def full_rank(self):
        return (int(len(self.s_in)), int(len(self.s_out)))

    def factors(self, rank):
        r_in, r_out = rank
        a, b = self.u_in[:, :r_in], self.u_out[:, :r_out]
        core = np.einsum("hwcn,cr,ns->hwrs", self.kernel, a, b)
        return a.astype(np.float32), core.astype(np.float32), b.T.astype(np.float32)

    def approximation(self, rank):
        a, core, bt = (f.astype(np.float64) for f in self.factors(rank))
        return np.einsum("hwrs,cr,sn->hwcn", core, a, bt)

    def new_layers(self, rank, names):
        from keras import layers

        a, core, bt = self.factors(rank)
        c = self.config
        fmt = c["data_format"]
        first = self._first(layers.Conv2D, names[0], filters=rank[0], kernel_size=(1, 1),
                            data_format=fmt)
        middle = self._first(layers.Conv2D, names[1], filters=rank[1],
                             kernel_size=c["kernel_size"], strides=c["strides"],
                             padding=c["padding"], data_format=fmt,
                             dilation_rate=c["dilation_rate"])
        last = layers.Conv2D.from_config(self._config(kernel_size=(1, 1), strides=(1, 1),
                                                      padding="valid", dilation_rate=(1, 1)))
        weights = [bt[None, None]] + ([self.bias] if self.bias is not None else [])
        return [(first, [a[None, None]]), (middle, [core]), (last, weights)]

    def macs(self, rank, in_shape, out_shape):
        spatial_in = int(np.prod([d or 1 for d in in_shape[1:-1]], dtype=np.int64))
        spatial = int(np.prod([d or 1 for d in out_shape[1:-1]], dtype=np.int64))
        h, w, c_in, c_out = self.kernel.shape
        if rank is None:
            return spatial * h * w * c_in * c_out
        r_in, r_out = rank
        return spatial_in * c_in * r_in + spatial * (h * w * r_in * r_out + r_out * c_out)

    def candidates(self, energies=ENERGIES, multiple=8, in_shape=None, out_shape=None):
        h, w, c_in, c_out = self.kernel.shape
        full = self.full_rank()
        unfold_in = self.kernel.transpose(2, 0, 1, 3).reshape(c_in, -1)
        unfold_out = self.kernel.transpose(3, 0, 1, 2).reshape(c_out, -1)
        proposals = [((energy_rank(self.s_in, e), energy_rank(self.s_out, e)), f"energy {e:g}")
                     for e in energies]
        proposals.append(((evbmf_rank(unfold_in), evbmf_rank(unfold_out)), "evbmf"))
        found = {}
        for (r_in, r_out), source in proposals:
            rank = (round_up(max(1, r_in), full[0], multiple),
                    round_up(max(1, r_out), full[1], multiple))
            shapes = (in_shape or (1, 1, 1, c_in), out_shape or (1, 1, 1, c_out))
            if self.macs(rank, *shapes) >= self.macs(None, *shapes) or rank == full:
                continue
            energy = min(retained(self.s_in, rank[0]), retained(self.s_out, rank[1]))
            _add(found, rank, energy, source)
        return sorted(found.values(), key=lambda c: (c[1], c[0]))

    def describe(self):
        h, w, c_in, c_out = self.kernel.shape
        return f"{h}x{w} {c_in}->{c_out}"


def decomposition(layer):
    """(Decomposition, None) for a layer it can factorise, else (None, why it is left whole)."""
    from keras import layers

    cls = type(layer).__name__
    config = layer.get_config()
    if isinstance(layer, (layers.DepthwiseConv2D, layers.SeparableConv2D)):
        return None, f"{cls}: depthwise and separable convs are left whole"
    if isinstance(layer, layers.Dense) and type(layer) is layers.Dense:
        if getattr(layer, "lora_enabled", False) or config.get("quantization_config"):
            return None, "Dense with LoRA or quantization: left whole"
        if len(layer.kernel.shape) != 2:
            return None, "Dense with an unusual kernel: left whole"
        return DenseSVD(layer), None
    if isinstance(layer, layers.Conv2D) and type(layer) is layers.Conv2D:
        if config.get("groups", 1) != 1:
            return None, f"grouped Conv2D ({config['groups']} groups): left whole"
        if tuple(config["kernel_size"]) == (1, 1):
            return PointwiseSVD(layer), None
        return Tucker2(layer), None
    return None, f"{cls}: no low-rank factorisation for this layer kind (Dense and Conv2D only)"
