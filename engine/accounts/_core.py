"""What the security and password-reset flows use of :class:`AccountService`.

``Security`` and ``PasswordResets`` are built by the account service with the service itself;
they name this Protocol rather than the class, so ``_service`` imports them and they do not
import ``_service`` back (tests/unit/test_import_graph.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.accounts._events import SecurityLog
    from engine.accounts._mfa import Mfa
    from engine.accounts._passwords import Passwords
    from engine.accounts._ratelimit import LoginLimiter
    from engine.accounts.models import TokenPair
    from engine.principal import Role
    from engine.records import Sealer
    from engine.store import Item, Store


class AccountsCore(Protocol):
    _store: Store
    _passwords: Passwords
    _limiter: LoginLimiter
    events: SecurityLog
    mfa: Mfa

    def _sealer_open(self) -> Sealer: ...

    async def _profile_item(self, user_id: str) -> Item | None: ...

    def gate(self, user_id: str, device: str | None) -> str: ...

    async def issue_login(self, user_id: str, role: Role, device: str | None) -> TokenPair: ...

    async def revoke_sessions(self, user_id: str, *, keep: str = "") -> None: ...

    async def find_for_reset(
        self, email: str | None, crm: str | None, uf: str | None
    ) -> dict[str, Any] | None: ...

    async def allow_reset(self, user_id: str, per_hour: int) -> bool: ...
