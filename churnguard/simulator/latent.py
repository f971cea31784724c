"""The latent state of each account and its monthly transition.

One transition function serves both the company's realised history and the oracle's
Monte Carlo continuation, so the oracle's probabilities are those of the very process
that generated the data. State arrays may hold one row per account (history) or one row
per (account, path) (oracle); `Static` is indexed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from churnguard.simulator.config import BEHAVIOUR, Behaviour

DRIVERS = (
    "low_engagement",
    "declining_usage",
    "disengagement",
    "champion_left",
    "unresolved_bugs",
    "poor_onboarding",
    "price",
    "slow_support",
)


@dataclass(frozen=True)
class Static:
    """Per-account traits that never change."""

    mu: np.ndarray  # long-run engagement level
    onboarding: np.ndarray  # onboarding quality, N(0,1); poor below -0.6
    price_sensitivity: np.ndarray  # 0..1
    slow_support: np.ndarray  # 0/1: served by an understaffed support queue
    bugginess: np.ndarray  # multiplier of high-severity bug arrivals
    bug_fix_p: np.ndarray  # monthly probability an open high bug gets resolved
    base_logit: np.ndarray  # churn decision base by segment x billing

    def take(self, idx: np.ndarray) -> Static:
        return Static(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @property
    def poor_onboarding(self) -> np.ndarray:
        return (self.onboarding < -0.6).astype(np.float64)


@dataclass(frozen=True)
class State:
    """Per-account state at a month boundary."""

    e: np.ndarray  # engagement (log activity multiplier)
    e_avg: np.ndarray  # slow moving average of engagement (what "usual" looks like)
    z: np.ndarray  # 1 while disengaging
    champ: np.ndarray  # 1 when a champion is in place
    since_loss: np.ndarray  # months since the champion last left (99 = never)
    bugs: np.ndarray  # open high-severity bugs
    age: np.ndarray  # months since the account started
    x: np.ndarray  # experienced usage of the last month: log((events + 0.5) / (reach + 0.5))
    x_avg: np.ndarray  # moving average of x (what "usual" usage felt like)
    reach: np.ndarray  # expected events of the last month at engagement 0 (team size x days)

    def take(self, idx: np.ndarray) -> State:
        return State(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def put(self, idx: np.ndarray, other: State) -> State:
        """A copy with rows `idx` replaced by `other`'s rows."""
        out = {}
        for f in fields(self):
            arr = getattr(self, f.name).copy()
            arr[idx] = getattr(other, f.name)
            out[f.name] = arr
        return State(**out)


@dataclass(frozen=True)
class Transition:
    """What happened during a month, for rendering the observable tables."""

    champ_left: np.ndarray
    champ_hired: np.ndarray
    bugs_new: np.ndarray
    bugs_resolved: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def initial_state(static: Static, rng: np.random.Generator, age: np.ndarray) -> State:
    """State of accounts entering the simulation (new, or pre-existing at burn-in start)."""
    n = len(static.mu)
    b = BEHAVIOUR
    young = age < 3
    gap = np.where(young, b.onboarding_gap * (1.0 - np.tanh(static.onboarding)), 0.0)
    e = static.mu - gap + 0.15 * rng.standard_normal(n)
    champ = (rng.random(n) < 0.85).astype(np.float64)
    return State(
        e=e,
        e_avg=e.copy(),
        z=np.zeros(n),
        champ=champ,
        since_loss=np.full(n, 99.0),
        bugs=np.zeros(n),
        age=age.astype(np.float64),
        x=e.copy(),
        x_avg=e.copy(),
        reach=np.zeros(n),
    )


def champion_recent(state: State, b: Behaviour = BEHAVIOUR) -> np.ndarray:
    """1 when there is no champion or one left in the last few months."""
    return ((state.champ < 0.5) | (state.since_loss < b.champ_recent_months)).astype(np.float64)


def step(
    state: State, static: Static, rng: np.random.Generator, b: Behaviour = BEHAVIOUR
) -> tuple[State, Transition]:
    """Advance every row one month."""
    n = len(state.e)
    u = rng.random((5, n))
    age = state.age + 1
    young = (age < b.onboarding_months).astype(np.float64)
    poor = static.poor_onboarding
    ch_recent = champion_recent(state, b)
    bugs_c = np.minimum(state.bugs, 4.0)

    p_enter = _sigmoid(
        b.z_base
        + b.z_champion * ch_recent
        + b.z_bugs * bugs_c
        + b.z_price * static.price_sensitivity
        + b.z_onboarding * poor * young
        + b.z_slow * static.slow_support
    )
    z = np.where(state.z > 0.5, (u[0] >= b.z_exit).astype(np.float64), (u[0] < p_enter).astype(np.float64))

    onboarding_gap = np.where(age < 3, b.onboarding_gap * (1.0 - np.tanh(static.onboarding)), 0.0)
    target = static.mu - onboarding_gap - 0.25 * poor
    shock = np.where(u[1] < b.shock_p, -rng.exponential(b.shock_scale, n), 0.0)
    e = state.e + b.kappa * (target - state.e) + b.sigma * rng.standard_normal(n) - b.drift * z + shock

    leave = (state.champ > 0.5) & (u[2] < b.champ_leave * (1.0 + 1.5 * z))
    hire = (state.champ < 0.5) & (u[3] < b.champ_hire)
    champ = np.where(leave, 0.0, np.where(hire, 1.0, state.champ))
    since_loss = np.where(leave, 0.0, np.minimum(state.since_loss + 1.0, 99.0))

    resolved = rng.binomial(state.bugs.astype(np.int64), static.bug_fix_p).astype(np.float64)
    new = rng.poisson(b.bug_rate * static.bugginess * np.exp(0.4 * e)).astype(np.float64)
    bugs = state.bugs - resolved + new
    e_avg = (1.0 - b.avg_weight) * state.e_avg + b.avg_weight * e
    # the month's usage as the customer lives it: events drawn at the new engagement
    x = experienced_usage(rng.poisson(state.reach * np.exp(e)).astype(np.float64), state.reach)
    x_avg = (1.0 - b.avg_weight) * state.x_avg + b.avg_weight * x
    nxt = State(
        e=e, e_avg=e_avg, z=z, champ=champ, since_loss=since_loss, bugs=bugs, age=age,
        x=x, x_avg=x_avg, reach=state.reach,
    )  # fmt: skip
    return nxt, Transition(champ_left=leave, champ_hired=hire, bugs_new=new, bugs_resolved=resolved)


def experienced_usage(events: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Log ratio of a month's events to what the team would do at engagement 0."""
    return np.log((events + 0.5) / (reach + 0.5))


def churn_terms(state: State, static: Static, b: Behaviour = BEHAVIOUR) -> dict[str, np.ndarray]:
    """Each driver's contribution to the churn-decision logit (positive = more risk)."""
    young = (state.age < b.onboarding_months).astype(np.float64)
    return {
        "low_engagement": -b.w_engagement * state.x_avg,
        "declining_usage": b.w_decline * np.maximum(state.x_avg - state.x, 0.0),
        "disengagement": b.w_z * state.z,
        "champion_left": b.w_champion * champion_recent(state, b),
        "unresolved_bugs": b.w_bugs * np.minimum(state.bugs, 4.0),
        "poor_onboarding": b.w_onboarding * static.poor_onboarding * young,
        "price": b.w_price * static.price_sensitivity,
        "slow_support": b.w_slow * static.slow_support,
    }


def churn_probability(state: State, static: Static, b: Behaviour = BEHAVIOUR) -> np.ndarray:
    """P(the account leaves at a term end falling in this month)."""
    terms = churn_terms(state, static, b)
    return _sigmoid(static.base_logit + sum(terms.values()))


def main_driver(state: State, static: Static, b: Behaviour = BEHAVIOUR) -> np.ndarray:
    """Name of the largest risk contribution per row (the churn 'reason' in the truth)."""
    terms = churn_terms(state, static, b)
    # engagement counts as a driver only by how far it sits below the population level
    terms = {**terms, "low_engagement": np.maximum(terms["low_engagement"], 0.0)}
    stack = np.vstack([terms[d] for d in DRIVERS])
    return np.asarray(DRIVERS, dtype=object)[np.argmax(stack, axis=0)]


def with_age(state: State, age: np.ndarray) -> State:
    return replace(state, age=age)
