"""A missing PostgreSQL, S3 server or JS client: the test fails under CI, skips elsewhere."""

import pytest

from tests.conftest import unavailable


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", " True "])
def test_under_ci_a_missing_service_fails(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is unavailable under CI: gone"):
        unavailable("PostgreSQL", "gone")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_elsewhere_a_missing_service_skips(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="moto_server is unavailable: gone"):
        unavailable("moto_server", "gone")
