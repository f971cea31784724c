"""`churn at-risk` and `churn explain` on scores written by the real score stage."""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from tests.serving_fakes import Company, scored_company

runner = CliRunner()


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Company:
    return scored_company(tmp_path_factory.mktemp("cli") / "co", n_accounts=30)


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_at_risk_json_filters_and_top(company: Company) -> None:
    latest = pd.read_parquet(company.scores / "latest.parquet")
    r = _run("at-risk", "--scores", str(company.scores), "--format", "json", "--segment", "smb",
             "--min-risk", "0.05", "--top", "3")  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    want = latest[(latest["segment"] == "smb") & (latest["risk"] >= 0.05)].head(3)
    assert [x["account_id"] for x in rows] == want["account_id"].tolist()
    assert isinstance(rows[0]["reasons"], list) and rows[0]["model_version"] == "1"
    assert rows[0]["currency"] == "EUR"


def test_at_risk_csv_renewal_window(company: Company) -> None:
    latest = pd.read_parquet(company.scores / "latest.parquet")
    r = _run(
        "at-risk",
        "--scores",
        str(company.scores),
        "--format",
        "csv",
        "--renewal-within",
        "90",
        "--top",
        "100",
    )
    assert r.exit_code == 0, r.output
    got = pd.read_csv(io.StringIO(r.stdout))
    assert (
        got["account_id"].tolist()
        == latest.loc[latest["days_to_renewal"].between(0, 90), "account_id"].tolist()
    )
    assert got.columns[-1] == "currency" and (got["currency"] == "EUR").all()


def test_at_risk_table_shows_ranked_accounts(company: Company) -> None:
    latest = pd.read_parquet(company.scores / "latest.parquet")
    r = _run("at-risk", "--scores", str(company.scores), "--top", "2")
    assert r.exit_code == 0, r.output
    first, second, third = latest["account_id"].iloc[:3]
    assert first in r.stdout and second in r.stdout and third not in r.stdout
    assert "model 1" in r.stdout
    assert "ARR (EUR)" in r.stdout and "exp. loss (EUR)" in r.stdout


def test_explain_prints_reasons_playbook_and_history(company: Company) -> None:
    latest = pd.read_parquet(company.scores / "latest.parquet")
    row = latest.iloc[0]
    r = _run("explain", row["account_id"], "--scores", str(company.scores))
    assert r.exit_code == 0, r.output
    assert f"{row['risk']:.1%}" in r.stdout and row["reason_1"] in r.stdout
    assert f"playbook: {row['action_1']}" in r.stdout
    assert f"ARR {row['arr']:,.0f} EUR · expected loss {row['expected_arr_lost']:,.0f} EUR" in r.stdout
    assert r.stdout.count("model 1") >= 3  # three runs in the history
    j = json.loads(
        _run("explain", row["account_id"], "--scores", str(company.scores), "--format", "json").stdout
    )
    assert len(j["history"]) == 3 and j["risk"] == pytest.approx(row["risk"])


def test_scores_without_a_currency_column_show_no_unit(company: Company, tmp_path) -> None:
    """Scores written before the score stage recorded the currency still load."""
    shutil.copytree(company.scores, tmp_path / "scores")
    latest = pd.read_parquet(tmp_path / "scores" / "latest.parquet").drop(columns=["currency"])
    latest.to_parquet(tmp_path / "scores" / "latest.parquet", index=False)
    table = _run("at-risk", "--scores", str(tmp_path / "scores"), "--top", "2")
    assert table.exit_code == 0, table.output
    assert "ARR" in table.stdout and "(EUR)" not in table.stdout and "(USD)" not in table.stdout
    row = latest.iloc[0]
    text = _run("explain", row["account_id"], "--scores", str(tmp_path / "scores"))
    assert text.exit_code == 0, text.output
    assert f"ARR {row['arr']:,.0f} · expected loss {row['expected_arr_lost']:,.0f} ·" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "nope"], "nope"),
        (["at-risk", "--tier", "red"], "tier"),
        (["at-risk", "--format", "xml"], "--format"),
        (["at-risk", "--sort", "name"], "sort"),
    ],
)
def test_bad_input_exits_2_with_one_line(company: Company, args: list[str], message: str) -> None:
    r = _run(*args, "--scores", str(company.scores))
    assert r.exit_code == 2
    assert message in r.stderr and "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1


def test_missing_scores_is_a_clear_error(tmp_path) -> None:
    r = _run("at-risk", "--scores", str(tmp_path))
    assert r.exit_code == 2 and "no scores yet" in r.stderr
