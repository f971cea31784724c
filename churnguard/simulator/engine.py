"""The month loop that turns latent account histories into the company's exports.

Each month: the oracle is evaluated at the month start (from the state known then), new
accounts start, the latent state steps, term ends are decided, and users, events,
tickets and surveys of the month are rendered. Every month and every component draws
from its own seeded stream, so output is identical for a seed however it is chunked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from churnguard.simulator.accounts import Accounts, accounts_frame, draw_accounts, term_end
from churnguard.simulator.config import (
    BEHAVIOUR,
    COUNTRIES,
    LANGUAGE_BY_COUNTRY,
    SEGMENTS,
    US_PER_DAY,
    SimulateParams,
    month_starts,
)
from churnguard.simulator.events import month_events, month_reach
from churnguard.simulator.latent import (
    State,
    champion_recent,
    churn_probability,
    experienced_usage,
    initial_state,
    main_driver,
    step,
)
from churnguard.simulator.oracle import churn_within_horizon
from churnguard.simulator.surveys import SURVEY_MONTHS, month_surveys, surveys_frame
from churnguard.simulator.tickets import TicketBook
from churnguard.simulator.users import ADMIN, CHAMPION, MEMBER, NEVER, UserPool, scrambled_ids

log = logging.getLogger(__name__)

BURN_IN_MONTHS = 3
ORACLE_CHUNK = 2048  # accounts per Monte Carlo batch
_STREAMS = {
    "setup": 0,
    "latent": 1,
    "users": 2,
    "events": 3,
    "tickets": 4,
    "surveys": 5,
    "decide": 6,
    "oracle": 7,
}

EventSink = Callable[[int, pa.Table], None]


@dataclass(frozen=True)
class Company:
    """Everything the simulator produced except the events (streamed to a sink)."""

    accounts: pd.DataFrame
    subscriptions: pd.DataFrame
    users: pd.DataFrame
    tickets: pd.DataFrame
    surveys: pd.DataFrame
    oracle: pd.DataFrame
    churn_events: pd.DataFrame
    accounts_truth: pd.DataFrame
    latent_monthly: pd.DataFrame
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    n_events: int


def _rng(seed: int, month: int, stream: str) -> np.random.Generator:
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, month + 10_000, _STREAMS[stream]]))
    )


def simulate_company(p: SimulateParams, sink: EventSink) -> Company:
    """Simulate the company month by month; events go to `sink(month_index, table)`."""
    start = str(np.datetime64(p.start, "M"))
    n, months = p.accounts, p.months
    rng0 = _rng(p.seed, -1, "setup")
    acc = draw_accounts(rng0, n, months, start, p.preexisting_share)
    static = acc.static
    g0 = -BURN_IN_MONTHS
    ms = month_starts(start, g0, months + 1)  # ms[g - g0] is the start of month g
    data_end = int(ms[months - g0])

    def mstart(g: int) -> int:
        return int(ms[g - g0])

    account_ids_pa = pa.array(acc.account_id.astype(str), type=pa.string())
    id_index = pd.Index(acc.account_id.astype(str))
    language = np.array([LANGUAGE_BY_COUNTRY.get(COUNTRIES[c][0], "en") for c in acc.country], dtype=object)
    seats = acc.seats0.astype(np.int64).copy()
    price = acc.price_per_seat()
    s0, term = acc.start_month, acc.term_months

    # terms completed before the burn-in starts (renewed by construction: survivors)
    n_pre = np.where(s0 < g0, np.maximum(np.ceil((g0 - s0) / term).astype(np.int64) - 1, 0), 0)
    sub_rows: list[dict[str, np.ndarray]] = []
    rep = np.repeat(np.arange(n), n_pre)
    j = np.arange(len(rep)) - np.repeat(np.cumsum(n_pre) - n_pre, n_pre)
    sub_rows.append(
        {
            "acc": rep,
            "start": term_end(start, s0[rep] + j * term[rep], acc.anchor_day[rep]),
            "end": term_end(start, s0[rep] + (j + 1) * term[rep], acc.anchor_day[rep]),
            "seats": seats[rep],
            "canceled": np.full(len(rep), NEVER),
        }
    )
    cur_start = term_end(start, s0 + n_pre * term, acc.anchor_day)
    next_end = s0 + (n_pre + 1) * term

    alive = np.zeros(n, dtype=bool)
    churn_date = np.full(n, NEVER, dtype=np.int64)
    churn_reason = np.full(n, "", dtype=object)
    state = initial_state(static, rng0, np.zeros(n))
    pool = UserPool(salt=p.seed * 7919 + 17)
    book = TicketBook()
    survey_parts: list[pd.DataFrame] = []
    oracle_parts: list[pd.DataFrame] = []
    latent_parts: list[pd.DataFrame] = []
    e_sum, e_cnt = np.zeros(n), np.zeros(n)
    n_events = 0

    for g in range(g0, months):
        t0, t1 = mstart(g), mstart(g + 1)
        if g >= 1:
            oracle_parts.append(_oracle(p, state, acc, alive, next_end, g, start, t0))
        born = (s0 == g) | ((g == g0) & (s0 < g0))
        rng_l = _rng(p.seed, g, "latent")
        # the decisions of this month are taken on the state of the month before (known at t0)
        h = churn_probability(state, static)
        decided_on = state
        stepped, tr = step(state, static, rng_l)
        if born.any():
            idx = np.flatnonzero(born)
            init = initial_state(static.take(idx), rng_l, np.maximum(g - s0[idx], 0).astype(np.float64))
            stepped = stepped.put(idx, init)
            _add_initial_users(_rng(p.seed, g, "users"), pool, acc, idx, init, seats, t0, g == g0)
        state = stepped
        alive = alive | born
        not_born = ~born

        # renewals and churn at the term ends of this month
        rng_d = _rng(p.seed, g, "decide")
        u = rng_d.random((3, n))
        has_end = alive & (next_end == g)
        end_ts = term_end(start, np.full(n, g), acc.anchor_day)
        leave = has_end & (u[0] < h) & (g >= 0)
        renew = has_end & ~leave
        canceled = np.where(
            leave & (u[1] < 0.6),
            np.maximum(t0, cur_start) + (u[2] * (end_ts - np.maximum(t0, cur_start))).astype(np.int64),
            NEVER,
        )
        ended = np.flatnonzero(has_end)
        sub_rows.append(
            {
                "acc": ended,
                "start": cur_start[ended],
                "end": end_ts[ended],
                "seats": seats[ended],
                "canceled": canceled[ended],
            }
        )
        churn_date[leave] = end_ts[leave]
        churn_reason[leave] = main_driver(
            decided_on.take(np.flatnonzero(leave)), static.take(np.flatnonzero(leave))
        )
        cur_start = np.where(renew, end_ts, cur_start)
        next_end = np.where(renew, next_end + term, next_end)
        change = renew & (acc.annual | (u[1] < 0.12))
        factor = np.exp(0.1 * state.e + 0.04 + 0.07 * rng_d.standard_normal(n))
        seats = np.where(change, np.maximum(1, np.round(seats * factor)).astype(np.int64), seats)

        lo = np.where(alive, np.maximum(t0, acc.created_at), t0)
        hi = np.where(alive, np.where(leave, end_ts, t1), t0)
        target = np.round(seats * acc.utilisation).astype(np.int64)
        rng_u = _rng(p.seed, g, "users")
        pool.month_turnover(
            rng_u, alive & ~leave, target, tr.champ_left & not_born, tr.champ_hired & not_born, t0, t1
        )
        active_users = pool.active_counts(t0, n)
        book.month(
            _rng(p.seed, g, "tickets"),
            t0,
            lo,
            hi,
            0.9 * state.e - 0.6 * state.z,
            active_users,
            static.slow_support,
            np.where(not_born, tr.bugs_new, 0.0),
            np.where(not_born, tr.bugs_resolved, 0.0),
            t1,
        )
        account_end = np.where(alive, hi, t0)
        reach = month_reach(pool, t0, t1, account_end, p.events_per_user_day)
        if g < 0:
            state = replace(state, reach=reach)
        if g >= 0:
            table = month_events(
                _rng(p.seed, g, "events"), pool, t0, t1, account_end, state.e, acc.tz_hours,
                p.events_per_user_day, account_ids_pa,
            )  # fmt: skip
            n_events += table.num_rows
            sink(g, table)
            # the churn decision sees the usage the customer actually had this month
            codes = id_index.get_indexer(table.column("account_id").to_numpy(zero_copy_only=False))
            x = experienced_usage(np.bincount(codes, minlength=n).astype(np.float64), reach)
            w = BEHAVIOUR.avg_weight
            state = replace(state, x=x, x_avg=state.x_avg - w * (state.x - x), reach=reach)
            e_sum += np.where(alive, state.e, 0.0)
            e_cnt += alive
            month_of_year = int(str(np.datetime64(start, "M") + g)[5:7])
            if month_of_year in SURVEY_MONTHS:
                survey_parts.append(
                    month_surveys(_rng(p.seed, g, "surveys"), lo, hi, state, static, pool, language)
                )
            live = np.flatnonzero(alive)
            latent_parts.append(
                pd.DataFrame(
                    {
                        "account": live,
                        "month_start": t0,
                        "engagement": decided_on.e[live],
                        "engagement_avg": decided_on.e_avg[live],
                        "usage_experienced": decided_on.x[live],
                        "usage_experienced_avg": decided_on.x_avg[live],
                        "usage_reach": decided_on.reach[live],
                        "disengaging": decided_on.z[live] > 0.5,
                        "champion_recently_lost": champion_recent(decided_on)[live] > 0.5,
                        "open_high_bugs": decided_on.bugs[live].astype(np.int64),
                        "churn_decision_p": h[live],
                        "term_ends_this_month": has_end[live],
                    }
                )
            )
        alive = alive & ~leave
        log.debug("month %d: %d alive accounts, %d events so far", g, alive.sum(), n_events)
    oracle_parts.append(_oracle(p, state, acc, alive, next_end, months, start, data_end))

    # the open terms at the data end
    open_idx = np.flatnonzero(alive)
    sub_rows.append(
        {
            "acc": open_idx,
            "start": cur_start[open_idx],
            "end": term_end(start, next_end[open_idx], acc.anchor_day[open_idx]),
            "seats": seats[open_idx],
            "canceled": np.full(len(open_idx), NEVER),
        }
    )
    mean_e = np.where(e_cnt > 0, e_sum / np.maximum(e_cnt, 1), static.mu)
    return Company(
        accounts=accounts_frame(acc),
        subscriptions=_subscriptions_frame(sub_rows, acc, price, p.seed),
        users=pool.frame(acc.account_id, data_end),
        tickets=book.frame(_rng(p.seed, months, "tickets"), acc.account_id, mean_e, data_end),
        surveys=surveys_frame(survey_parts, acc.account_id, pool, salt=p.seed * 31 + 5),
        oracle=_ids(pd.concat(oracle_parts, ignore_index=True), acc),
        churn_events=_churn_events(acc, churn_date, churn_reason),
        accounts_truth=_accounts_truth(acc, churn_date, churn_reason),
        latent_monthly=_latent_frame(latent_parts, acc),
        data_start=pd.Timestamp(mstart(0), unit="us", tz="UTC"),
        data_end=pd.Timestamp(data_end, unit="us", tz="UTC"),
        n_events=n_events,
    )


def _oracle(
    p: SimulateParams,
    state: State,
    acc: Accounts,
    alive: np.ndarray,
    next_end: np.ndarray,
    g: int,
    start: str,
    t: int,
) -> pd.DataFrame:
    idx = np.flatnonzero(alive)
    rng = _rng(p.seed, g, "oracle")
    prob = np.zeros(len(idx))
    # fixed-size chunks bound memory (accounts x paths rows) and keep draws deterministic
    for lo in range(0, len(idx), ORACLE_CHUNK):
        part = idx[lo : lo + ORACLE_CHUNK]
        prob[lo : lo + ORACLE_CHUNK] = churn_within_horizon(
            rng,
            state.take(part),
            acc.static.take(part),
            next_end[part],
            acc.term_months[part],
            acc.anchor_day[part],
            g,
            p.horizon_days,
            start,
            p.oracle_paths,
        )
    return pd.DataFrame({"account": idx, "snapshot_date": t, "p_churn_horizon": prob})


def _ids(df: pd.DataFrame, acc: Accounts) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": acc.account_id[df["account"].to_numpy(np.int64)].astype(str),
            "snapshot_date": pd.to_datetime(df["snapshot_date"].to_numpy(np.int64), unit="us"),
            "p_churn_horizon": df["p_churn_horizon"].to_numpy(np.float64),
        }
    )


def _add_initial_users(
    rng: np.random.Generator,
    pool: UserPool,
    acc: Accounts,
    idx: np.ndarray,
    init: State,
    seats: np.ndarray,
    t0: int,
    preexisting: bool,
) -> None:
    """An account's first team: an admin, a champion (when the state has one) and members."""
    size = np.maximum(1, np.round(seats[idx] * acc.utilisation[idx] * rng.uniform(0.45, 0.85, len(idx))))
    size = size.astype(np.int64) + (init.champ > 0.5)
    rows = np.repeat(np.arange(len(idx)), size)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(size) - size, size)
    has_champ = (init.champ > 0.5)[rows]
    role = np.where(k == 0, ADMIN, np.where((k == 1) & has_champ, CHAMPION, MEMBER))
    created_acc = acc.created_at[idx][rows]
    if preexisting:
        span = np.maximum(t0 - created_acc, 1)
        created = created_acc + (rng.random(len(rows)) * span).astype(np.int64)
    else:
        created = created_acc + (rng.random(len(rows)) * 14 * US_PER_DAY).astype(np.int64)
    created = np.where(k == 0, created_acc, created)
    pool.add(rng, idx[rows], created, role)


def _subscriptions_frame(
    parts: list[dict[str, np.ndarray]], acc: Accounts, price: np.ndarray, seed: int
) -> pd.DataFrame:
    cols = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    order = np.lexsort((cols["acc"], cols["start"]))
    cols = {k: v[order] for k, v in cols.items()}
    a = cols["acc"]
    canceled = cols["canceled"]
    return pd.DataFrame(
        {
            "account_id": acc.account_id[a].astype(str),
            "subscription_id": scrambled_ids("sub_", np.arange(len(a)), seed * 131 + 3, digits=10).astype(
                str
            ),
            "start_date": pd.to_datetime(cols["start"], unit="us", utc=True),
            "end_date": pd.to_datetime(cols["end"], unit="us", utc=True),
            "mrr": np.round(cols["seats"] * price[a], 2),
            "plan": np.asarray([s.plan for s in SEGMENTS], dtype=object)[acc.segment[a]].astype(str),
            "billing_period": np.where(acc.annual[a], "annual", "monthly").astype(str),
            "seats": cols["seats"].astype(np.int64),
            "canceled_at": pd.to_datetime(
                np.where(canceled == NEVER, np.datetime64("NaT"), canceled.astype("datetime64[us]")), utc=True
            ),
        }
    )


def _churn_events(acc: Accounts, churn_date: np.ndarray, reason: np.ndarray) -> pd.DataFrame:
    idx = np.flatnonzero(churn_date < NEVER)
    idx = idx[np.argsort(churn_date[idx], kind="stable")]
    return pd.DataFrame(
        {
            "account_id": acc.account_id[idx].astype(str),
            "churn_date": pd.to_datetime(churn_date[idx], unit="us"),
            "reason": reason[idx].astype(str),
            "segment": np.asarray([s.name for s in SEGMENTS], dtype=object)[acc.segment[idx]].astype(str),
            "billing_period": np.where(acc.annual[idx], "annual", "monthly").astype(str),
        }
    )


def _accounts_truth(acc: Accounts, churn_date: np.ndarray, reason: np.ndarray) -> pd.DataFrame:
    s = acc.static
    return pd.DataFrame(
        {
            "account_id": acc.account_id.astype(str),
            "engagement_level": s.mu,
            "onboarding_quality": s.onboarding,
            "poor_onboarding": s.poor_onboarding > 0.5,
            "price_sensitivity": s.price_sensitivity,
            "slow_support": s.slow_support > 0.5,
            "bugginess": s.bugginess,
            "bug_fix_p": s.bug_fix_p,
            "churn_date": pd.to_datetime(
                np.where(churn_date == NEVER, np.datetime64("NaT"), churn_date.astype("datetime64[us]"))
            ),
            "churn_reason": pd.array([r or None for r in reason], dtype="string"),
        }
    )


def _latent_frame(parts: list[pd.DataFrame], acc: Accounts) -> pd.DataFrame:
    df = pd.concat(parts, ignore_index=True)
    out = df.drop(columns=["account"])
    out.insert(0, "account_id", acc.account_id[df["account"].to_numpy(np.int64)].astype(str))
    out["month_start"] = pd.to_datetime(df["month_start"].to_numpy(np.int64), unit="us")
    return out
