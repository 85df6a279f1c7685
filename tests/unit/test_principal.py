"""The one role check: ``Principal.require``."""

from __future__ import annotations

import pytest

from engine.errors import Forbidden
from engine.principal import Principal, Role


def _principal(role: Role) -> Principal:
    return Principal(user_id="u1", role=role, jti="j", issued_at=0, expires_at=1)


@pytest.mark.parametrize("role", ["doctor", "patient"])
def test_the_right_role_passes_through(role: Role) -> None:
    """A principal with the role asked for is returned as it is."""
    principal = _principal(role)
    assert principal.require(role) is principal


@pytest.mark.parametrize(("role", "other"), [("doctor", "patient"), ("patient", "doctor")])
def test_the_other_role_is_forbidden_wrong_role(role: Role, other: Role) -> None:
    """The other role is Forbidden ``wrong_role``, naming the role the operation is for."""
    with pytest.raises(Forbidden) as info:
        _principal(other).require(role)
    assert info.value.code == "wrong_role"
    assert info.value.detail == f"this is for {role}s"
