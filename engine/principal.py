"""Who is calling: the verified subject of an access token."""

from __future__ import annotations

from typing import Literal

import msgspec

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
