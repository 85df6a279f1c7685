"""Who is calling: the verified subject of an access token."""

from __future__ import annotations

from typing import Literal

import msgspec

from engine.errors import Forbidden

Role = Literal["doctor", "patient"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    role: Role
    jti: str
    issued_at: int
    """Seconds since the epoch (the token's ``iat``)."""
    expires_at: int
    """Seconds since the epoch (the token's ``exp``)."""
    session: str = ""
    """The login (refresh family) the token belongs to (``sid``); empty for tokens without."""

    def require(self, role: Role) -> Principal:
        """This principal if it has ``role``, else Forbidden ``wrong_role``: the one role check
        of every route and operation that is for doctors only or patients only."""
        if self.role != role:
            raise Forbidden(f"this is for {role}s", code="wrong_role")
        return self
