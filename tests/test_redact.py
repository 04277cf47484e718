"""What is shown (errors, output, the state store) never carries a password or a secret."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dq_agent.redact import mask_url, redact
from dq_agent.sources.sql import translate


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://dq:S3cr3t@db/analytics", "postgresql://dq:***@db/analytics"),
        ("postgresql://dq:S3@cr3t@db/analytics", "postgresql://dq:***@db/analytics"),
        (
            "postgresql://dq@db/analytics?password=S3cr3t",
            "postgresql://dq@db/analytics?password=***",
        ),
        (
            "postgresql://db/a?sslmode=require&SSLPassword=S3cr3t&connect_timeout=5",
            "postgresql://db/a?sslmode=require&SSLPassword=***&connect_timeout=5",
        ),
        ("mysql://db/a?passwd=S3cr3t;pwd=S3cr3t", "mysql://db/a?passwd=***;pwd=***"),
        (
            "https://api/x?api_key=S3cr3t&Token=S3cr3t&secret=S3cr3t&key=S3cr3t&page=2",
            "https://api/x?api_key=***&Token=***&secret=***&key=***&page=2",
        ),
        ("sqlite:///state.db", "sqlite:///state.db"),
    ],
)
def test_every_password_in_a_url_is_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_an_sqlalchemy_url_is_masked_wherever_its_password_is() -> None:
    url = sa.make_url("postgresql+psycopg://dq:p%40ss@db:5432/a?sslpassword=S3cr3t&x=1")
    assert mask_url(url) == "postgresql+psycopg://dq:***@db:5432/a?sslpassword=***&x=1"


def test_a_known_secret_is_masked_however_it_is_quoted() -> None:
    text = "login failed for p@ss (p%40ss), 'p@ss'"
    assert redact(text, "p@ss", None) == "login failed for *** (***), '***'"


def test_a_driver_error_never_echoes_the_password() -> None:
    url = sa.make_url("postgresql+psycopg://dq:Pw-1@db/a?sslpassword=Ssl-2")
    echo = Exception('invalid sslpassword "Ssl-2" for "host=db password=Pw-1"')
    error = translate(sa.exc.OperationalError("SELECT 1", {}, echo), url)
    assert str(error) == (
        "cannot reach postgresql+psycopg://dq:***@db/a?sslpassword=***: "
        'invalid sslpassword "***" for "host=db password=***"'
    )
    assert error.transient


def test_a_state_store_password_in_the_query_is_never_shown() -> None:
    from dq_agent.daemon.leader import Leadership
    from dq_agent.errors import StoreError
    from dq_agent.store import Store

    url = "postgresql+psycopg://dq@127.0.0.1:1/dq?password=S3cr3t-state&connect_timeout=2"
    with pytest.raises(StoreError) as opened:
        Store.open(url)
    assert "S3cr3t-state" not in str(opened.value)
    assert "password=***" in str(opened.value)
    with Leadership(url) as leadership, pytest.raises(StoreError) as led:
        leadership.try_acquire()
    assert "S3cr3t-state" not in str(led.value)
