"""churnguard: churn prediction for B2B SaaS, from raw exports to an at-risk list."""

__version__ = "0.1.0"
