"""Users at customer accounts: initial teams, hiring, departures and champions."""

from __future__ import annotations

import numpy as np
import pandas as pd

NEVER = np.iinfo(np.int64).max
ROLES = np.array(["admin", "champion", "member"], dtype=object)
ADMIN, CHAMPION, MEMBER = 0, 1, 2
_ROLE_ACTIVITY = np.array([1.3, 1.8, 1.0])


def scrambled_ids(prefix: str, index: np.ndarray, salt: int, digits: int = 8) -> np.ndarray:
    """Unique, random-looking hex ids for row numbers (a bijection modulo 16**digits)."""
    space = 16**digits
    values = (index.astype(np.uint64) * np.uint64(2654435761) + np.uint64(salt % space)) % np.uint64(space)
    return np.array([f"{prefix}{v:0{digits}x}" for v in values.tolist()], dtype=object)


class UserPool:
    """Growing arrays of users; one row per user ever created."""

    def __init__(self, salt: int) -> None:
        self.salt = salt
        self.ids = np.zeros(0, dtype=object)
        self.account = np.zeros(0, dtype=np.int64)
        self.created = np.zeros(0, dtype=np.int64)
        self.deactivated = np.zeros(0, dtype=np.int64)
        self.role = np.zeros(0, dtype=np.int64)
        self.activity = np.zeros(0)
        self.breadth = np.zeros(0)

    def __len__(self) -> int:
        return len(self.account)

    def add(
        self, rng: np.random.Generator, account: np.ndarray, created: np.ndarray, role: np.ndarray
    ) -> None:
        """Append new users (activity and breadth drawn per user)."""
        n = len(account)
        if n == 0:
            return
        activity = rng.lognormal(-0.18, 0.6, n) * _ROLE_ACTIVITY[role]
        new_ids = scrambled_ids("u_", np.arange(len(self), len(self) + n), self.salt)
        self.ids = np.concatenate([self.ids, new_ids])
        self.account = np.concatenate([self.account, account.astype(np.int64)])
        self.created = np.concatenate([self.created, created.astype(np.int64)])
        self.deactivated = np.concatenate([self.deactivated, np.full(n, NEVER, dtype=np.int64)])
        self.role = np.concatenate([self.role, role.astype(np.int64)])
        self.activity = np.concatenate([self.activity, activity])
        self.breadth = np.concatenate([self.breadth, rng.normal(0.0, 0.8, n)])

    def active_at(self, t: int) -> np.ndarray:
        """Boolean mask of users active at time t (µs)."""
        return (self.created <= t) & (self.deactivated > t)

    def active_counts(self, t: int, n_accounts: int) -> np.ndarray:
        return np.bincount(self.account[self.active_at(t)], minlength=n_accounts)

    def month_turnover(
        self,
        rng: np.random.Generator,
        alive: np.ndarray,
        target: np.ndarray,
        champ_left: np.ndarray,
        champ_hired: np.ndarray,
        t0: int,
        t1: int,
    ) -> None:
        """One month of departures and hires at the alive accounts, in [t0, t1)."""
        n_acc = len(alive)
        active = self.active_at(t0)
        on_alive = active & alive[self.account]
        # ordinary departures (members and admins)
        leave = on_alive & (self.role != CHAMPION) & (rng.random(len(self)) < 0.012)
        # the champion leaves when the latent state says so (the most recent active one)
        champ_rows = np.flatnonzero(on_alive & (self.role == CHAMPION))
        if len(champ_rows):
            acc = self.account[champ_rows]
            order = np.lexsort((-self.created[champ_rows], acc))
            first = np.ones(len(order), dtype=bool)
            first[1:] = acc[order][1:] != acc[order][:-1]
            latest = champ_rows[order[first]]
            leave[latest[champ_left[self.account[latest]]]] = True
        idx = np.flatnonzero(leave)
        self.deactivated[idx] = rng.integers(t0, t1, size=len(idx))

        counts = np.bincount(self.account[on_alive & ~leave], minlength=n_acc)
        gap = np.maximum(target - counts, 0)
        n_hire = np.where(alive, rng.poisson(0.3 * gap + 0.01 * counts), 0)
        hire_acc = np.repeat(np.arange(n_acc), n_hire)
        new_champ = np.flatnonzero(alive & champ_hired)
        accs = np.concatenate([hire_acc, new_champ])
        roles = np.concatenate([np.full(len(hire_acc), MEMBER), np.full(len(new_champ), CHAMPION)])
        self.add(rng, accs, rng.integers(t0, t1, size=len(accs)), roles)

    def frame(self, account_ids: np.ndarray, data_end: int) -> pd.DataFrame:
        """The users table (departures after the data end are not yet known)."""
        deact = np.where(self.deactivated < data_end, self.deactivated, NEVER)
        return pd.DataFrame(
            {
                "user_id": self.ids.astype(str),
                "account_id": account_ids[self.account].astype(str),
                "created_at": pd.to_datetime(self.created, unit="us", utc=True),
                "role": ROLES[self.role].astype(str),
                "deactivated_at": pd.to_datetime(
                    np.where(deact == NEVER, np.datetime64("NaT"), deact.astype("datetime64[us]")), utc=True
                ),
            }
        )
