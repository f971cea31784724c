"""NPS surveys twice a year, with comments in the language of the account's country."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.simulator.latent import State, Static, champion_recent
from churnguard.simulator.phrases import TOPICS, compose
from churnguard.simulator.users import UserPool, scrambled_ids

SURVEY_MONTHS = (3, 9)  # calendar months in which the NPS survey runs


def month_surveys(
    rng: np.random.Generator,
    lo: np.ndarray,
    hi: np.ndarray,
    state: State,
    static: Static,
    pool: UserPool,
    language: np.ndarray,
) -> pd.DataFrame:
    """Responses submitted in [lo[a], hi[a]) by active users of each live account."""
    alive = hi > lo
    active = pool.active_at(int(lo[alive].min())) if alive.any() else np.zeros(len(pool), dtype=bool)
    user_rows = np.flatnonzero(active & alive[pool.account])
    # each active user answers with a small probability; champions and admins more often
    p_answer = np.where(pool.role[user_rows] == 2, 0.08, 0.35)
    resp = user_rows[rng.random(len(user_rows)) < p_answer]
    n = len(resp)
    acc = pool.account[resp]
    # the account's mood at survey time
    ch = champion_recent(state)[acc]
    bugs = np.minimum(state.bugs, 3.0)[acc]
    mood = (
        9.4
        + 1.4 * state.e[acc]
        - 2.4 * state.z[acc]
        - 1.0 * ch
        - 0.6 * bugs
        - 1.8 * (static.price_sensitivity[acc] - 0.35)
        - 0.8 * static.slow_support[acc]
        - 0.9 * static.poor_onboarding[acc] * (state.age[acc] < 12)
    )
    nps = np.clip(np.round(mood + rng.normal(0.0, 1.4, n)), 0, 10).astype(np.int64)
    submitted = lo[acc] + (rng.random(n) * (hi - lo)[acc]).astype(np.int64)

    has_comment = rng.random(n) < np.where(nps <= 6, 0.75, 0.5)
    comments: list[str | None] = []
    for i in range(n):
        if not has_comment[i]:
            comments.append(None)
            continue
        a = acc[i]
        w = _topic_weights(nps[i], state, static, a, ch[i])
        k = 1 + int(rng.random() < 0.45)
        topics = list(rng.choice(len(TOPICS), size=k, replace=False, p=w / w.sum()))
        picks = rng.integers(0, 1000, size=2 + k).tolist()
        comments.append(compose(language[a], [TOPICS[t] for t in topics], picks))
    return pd.DataFrame(
        {"account": acc, "user": resp, "submitted": submitted, "nps": nps, "comment": comments}
    )


def _topic_weights(nps: int, state: State, static: Static, a: int, champ_recent: float) -> np.ndarray:
    detractor = nps <= 6
    promoter = nps >= 9
    z = state.z[a]
    w = {
        "price": 0.15 + 2.0 * static.price_sensitivity[a] * (nps <= 7),
        "competitor": 0.05 + 1.6 * z + 0.3 * static.price_sensitivity[a] * detractor,
        "bugs": 0.05 + 0.9 * min(state.bugs[a], 3.0),
        "support_slow": 0.05 + 1.2 * static.slow_support[a] * (nps <= 7),
        "hard": 0.05 + 1.2 * static.poor_onboarding[a] + 0.6 * (state.e[a] < -0.4),
        "cancel": 0.01 + 2.5 * z * detractor + 0.4 * champ_recent * detractor,
        "support_good": 0.1 + 0.8 * (1 - static.slow_support[a]) * (nps >= 8),
        "easy": 0.1 + 1.0 * (nps >= 8) * (static.poor_onboarding[a] < 0.5),
        "value": 0.05 + 1.5 * promoter + 0.4 * (state.e[a] > 0.4),
        "onboarding": 0.1 + 0.6 * (state.age[a] < 9),
        "feature_gap": 0.35,
    }
    return np.array([w[t] for t in TOPICS], dtype=np.float64)


def surveys_frame(
    parts: list[pd.DataFrame], account_ids: np.ndarray, pool: UserPool, salt: int
) -> pd.DataFrame:
    """The surveys table from the monthly parts, ordered by submission time."""
    if parts:
        df = pd.concat(parts, ignore_index=True)
    else:
        df = pd.DataFrame({"account": [], "user": [], "submitted": [], "nps": [], "comment": []})
    df = df.sort_values(["submitted", "user"], kind="stable").reset_index(drop=True)
    return pd.DataFrame(
        {
            "response_id": scrambled_ids("resp_", np.arange(len(df)), salt, digits=7).astype(str),
            "account_id": account_ids[df["account"].to_numpy(np.int64)].astype(str),
            "submitted_at": pd.to_datetime(df["submitted"].to_numpy(np.int64), unit="us", utc=True),
            "user_id": pool.ids[df["user"].to_numpy(np.int64)].astype(str),
            "nps": df["nps"].astype("int64"),
            "comment": pd.array(df["comment"].tolist(), dtype="string"),
        }
    )
