"""Seeded synthetic card-fraud transactions whose fraud labels follow a hidden logistic model."""

from __future__ import annotations

import numpy as np
import pandas as pd

GOLDEN_ROWS = 60_000
GOLDEN_SEED = 20_240_601
HIGH_VALUE_AMOUNT = 10_000.0
HOME_COUNTRY = "US"

MERCHANT_CATEGORIES: list[str] = [
    "grocery",
    "fuel",
    "restaurants",
    "pharmacy",
    "apparel",
    "entertainment",
    "utilities",
    "home_improvement",
    "electronics",
    "jewelry",
    "travel",
    "digital_goods",
]
COUNTRIES: list[str] = ["US", "CA", "GB", "DE", "FR", "MX", "BR", "NG"]
AGE_BANDS: list[str] = ["18-25", "26-35", "36-50", "51-65", "65+"]

COLUMNS: list[str] = [
    "transaction_id",
    "amount",
    "merchant_category",
    "country",
    "card_present",
    "hour",
    "customer_age_band",
    "customer_tenure_days",
    "tx_count_24h",
    "is_fraud",
]

# Key slices the demo criteria guard, as pandas query strings (evaluated with df.query).
KEY_SLICE_QUERIES: dict[str, str] = {
    "high_value": f"amount > {HIGH_VALUE_AMOUNT:g}",
    "card_not_present": "card_present == 0",
    "foreign": f"country != '{HOME_COUNTRY}'",
}

_CATEGORY_P = np.array([0.20, 0.12, 0.14, 0.07, 0.08, 0.07, 0.06, 0.06, 0.07, 0.03, 0.05, 0.05])
_CATEGORY_RISK = np.array([-0.6, -0.3, -0.4, -0.5, 0.0, 0.1, -0.7, -0.1, 0.6, 0.8, 0.5, 0.7])
# Typical spend differs by category; jewelry, travel and electronics carry the big tickets.
_CATEGORY_LOG_AMOUNT = np.array([4.0, 4.0, 4.0, 3.8, 4.6, 4.3, 5.0, 5.4, 6.0, 6.6, 6.5, 3.8])
_COUNTRY_P = np.array([0.62, 0.08, 0.07, 0.06, 0.05, 0.05, 0.04, 0.03])
_COUNTRY_RISK = np.array([0.0, 0.1, 0.2, 0.2, 0.2, 0.5, 0.7, 0.9])
_AGE_P = np.array([0.18, 0.22, 0.24, 0.20, 0.16])
_AGE_RISK = np.array([0.25, 0.05, 0.0, 0.0, 0.2])
_HIGH_RISK_CATEGORIES = np.array([False] * 8 + [True, True, True, False])
_INTERCEPT = -5.1


def _fraud_logit(
    amount: np.ndarray,
    cat: np.ndarray,
    ctry: np.ndarray,
    card_present: np.ndarray,
    hour: np.ndarray,
    age: np.ndarray,
    tenure: np.ndarray,
    tx_count: np.ndarray,
) -> np.ndarray:
    """Hidden log-odds of fraud; the high-value interactions give that slice its own ranking."""
    log_amount = np.log(amount)
    high_value = amount > HIGH_VALUE_AMOUNT
    night = (hour <= 4) | (hour >= 23)
    cnp = card_present == 0
    foreign = ctry != 0
    new_customer = tenure < 60
    logit = (
        _INTERCEPT
        + 0.35 * (log_amount - 4.5)
        + 1.1 * cnp
        + 0.9 * night
        + 0.5 * (night & cnp)
        + _CATEGORY_RISK[cat]
        + _COUNTRY_RISK[ctry]
        + 0.6 * (foreign & cnp)
        + _AGE_RISK[age]
        - 0.45 * np.log1p(tenure / 30.0)
        + 0.9 * new_customer
        + 0.6 * np.maximum(tx_count - 3, 0)
    )
    # Big tickets are judged differently: who, where and what matter more than the hour.
    hv_logit = (
        1.4 * _HIGH_RISK_CATEGORIES[cat]
        + 1.2 * foreign
        + 1.3 * new_customer
        + 0.9 * (log_amount - np.log(HIGH_VALUE_AMOUNT))
        - 0.9 * night
        - 0.8 * cnp
        - 2.0
    )
    return np.where(high_value, logit + hv_logit, logit)


def generate_transactions(n_rows: int, seed: int) -> pd.DataFrame:
    """Return `n_rows` synthetic transactions, identical for the same seed."""
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    rng = np.random.default_rng(seed)
    cat = rng.choice(len(MERCHANT_CATEGORIES), size=n_rows, p=_CATEGORY_P)
    ctry = rng.choice(len(COUNTRIES), size=n_rows, p=_COUNTRY_P)
    age = rng.choice(len(AGE_BANDS), size=n_rows, p=_AGE_P)
    amount = np.round(np.exp(rng.normal(_CATEGORY_LOG_AMOUNT[cat] + 0.9, 1.85, size=n_rows)), 2)
    amount = np.maximum(amount, 0.5)
    online_bias = np.where(np.isin(cat, [8, 10, 11]), 0.35, 0.0)
    card_present = (rng.random(n_rows) > 0.3 + online_bias).astype(np.int64)
    hour_p = np.array([1, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 7, 8, 7, 7, 7, 7, 7, 7, 6, 5, 4, 3, 2.0])
    hour = rng.choice(24, size=n_rows, p=hour_p / hour_p.sum()).astype(np.int64)
    tenure = np.floor(rng.exponential(900.0, size=n_rows)).astype(np.int64)
    tx_count = rng.poisson(2.0, size=n_rows).astype(np.int64) + 1
    logit = _fraud_logit(amount, cat, ctry, card_present, hour, age, tenure, tx_count)
    is_fraud = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    prefix = f"tx{seed % 10_000:04d}"
    return pd.DataFrame(
        {
            "transaction_id": np.array([f"{prefix}-{i:08d}" for i in range(n_rows)], dtype=object),
            "amount": amount.astype(np.float64),
            "merchant_category": np.array(MERCHANT_CATEGORIES, dtype=object)[cat],
            "country": np.array(COUNTRIES, dtype=object)[ctry],
            "card_present": card_present,
            "hour": hour,
            "customer_age_band": np.array(AGE_BANDS, dtype=object)[age],
            "customer_tenure_days": tenure,
            "tx_count_24h": tx_count,
            "is_fraud": is_fraud,
        },
        columns=COLUMNS,
    )
