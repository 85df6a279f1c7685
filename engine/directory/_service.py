"""The doctor directory: Redis GEO and rating indexes rebuilt from the store, and search.

Redis layout (names in :mod:`engine.keys`):

* ``directory_geo(slug)`` and ``directory_geo_all()``: GEO sets of doctor ids, per specialty
  and for all doctors;
* ``directory_rating_by(slug)`` and ``directory_rating()``: sorted sets of doctor ids scored by
  the *negated* average rating (0 for a doctor not rated yet). Ascending order is then best
  rating first with ties broken by id ascending, which plain ``ZRANGE`` gives us, and
  "average >= m" is "score <= -m", which leaves unrated doctors out for any m > 0;
* ``directory_doctor(id)``: hash with the doctor's public card;
* ``directory_specialties()``: the slugs with doctors (a slug left empty leaves it); counts
  are the GEO sets' cardinalities, read at query time, so they never drift.

The store is the truth; everything here can be dropped and rebuilt (:meth:`rebuild`). These
keys share the ``{dir}`` hash tag, so the scripts that write several of them at once
(``move.lua``: a doctor in or out, atomically out of the old specialty; ``rating.lua``) run on
one cluster slot; a rebuild writes them with plain pipelined commands. A search page costs
two or three round trips whatever its length.

Search pages are cached per process (:class:`engine.fresh.FreshCache`) for at most
``SEARCH_STALE_SECONDS``: a page served is never older than that (a doctor, rating or slot
changed in another process, or a slot booked, shows within that bound), and concurrent
identical searches share one read. A page is not served from the cache once a
``next_open_slot`` it shows has closed to requests, and writes through this service (a doctor
in, out or moved, a rating) drop the cache, so this process sees them at once. A shown slot
is a hint: booking it is decided by ``reserve.lua``, which may answer 409.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import RedisError

from engine import keys
from engine.accounts import validators as _validate
from engine.accounts.models import Money, Rating, doctor_profile
from engine.booking import DECISION_LEAD_MS
from engine.directory._models import DoctorCard, SearchPage, Specialty, SpecialtyList
from engine.errors import Invalid, Unavailable
from engine.fresh import FreshCache
from engine.lua import Reply, load
from engine.paging import LIMIT_DEFAULT, check_limit, decode_cursor, encode_cursor, invalid_cursor
from engine.store import keys as store_keys
from engine.timeutil import now_ms, to_rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    from engine.accounts.models import DoctorProfile
    from engine.store import Store

log = logging.getLogger("healthmed.directory")

MAX_OFFSET = 10_000
"""Deepest page a cursor may reach; past it, narrow the search."""
EARTH_RADIUS_KM = 20_038.0
"""Half the equator: a radius that covers the whole earth, used when no ``max_km`` is given,
so a search with a location but no distance limit still orders every doctor by distance."""
SEARCH_STALE_SECONDS = 0.25
"""Oldest search page served from the per-process cache (from the start of its Redis reads)."""
SEARCH_CACHE_SIZE = 4096
"""Search pages kept per process (distinct filters and offsets); the oldest go first."""

_cursor_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


def _invalid(detail: str, code: str, field: str) -> Invalid:
    return Invalid(detail, code=code, errors=[{"key": field, "message": detail}])


def _score(rating: Rating) -> float:
    return -rating.average if rating.average is not None else 0.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class MoveReply(Reply, array_like=True, frozen=True):
    """move.lua: ``done``, or ``changed`` (the specialty changed since it was read)."""


class RatingReply(Reply, array_like=True, frozen=True):
    """rating.lua: ``applied``, or ``ignored`` (card gone, or a newer count already there)."""


def _still_requestable(entry: tuple[SearchPage, float]) -> bool:
    """Every ``next_open_slot`` of a cached page is still open to requests by time."""
    return now_ms() < entry[1]


class _Query(msgspec.Struct, frozen=True, kw_only=True):
    specialty: str | None
    lat: float | None
    lon: float | None
    max_km: float | None
    min_rating: float
    limit: int

    def fingerprint(self) -> str:
        """Ties a cursor to the filters it was issued for."""
        return hashlib.sha256(_encoder.encode(self)).hexdigest()[:12]


class DirectoryService:
    def __init__(
        self, store: Store, redis: Redis, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._redis = redis
        # (page, epoch ms until which every next_open_slot it shows is still requestable)
        self._pages: FreshCache[tuple[_Query, int], tuple[SearchPage, float]] = FreshCache(
            SEARCH_STALE_SECONDS, SEARCH_CACHE_SIZE, clock=clock
        )
        self._rate = load(redis, __package__, "rating", RatingReply)
        self._move_script = load(redis, __package__, "move", MoveReply)

    # --- maintenance ------------------------------------------------------------------------
    @staticmethod
    def _card(profile: DoctorProfile) -> dict[str, str | int | float]:
        return {
            "id": profile.id,
            "name": profile.name,
            "specialty": profile.specialty,
            "crm": profile.crm,
            "uf": profile.uf,
            "city": profile.city or "",
            "price_cents": profile.price.amount_cents,
            "avg": "" if profile.rating.average is None else profile.rating.average,
            "count": profile.rating.count,
        }

    def _add(self, pipe: Pipeline, profile: DoctorProfile) -> None:
        spec = profile.specialty
        pipe.hset(keys.directory_doctor(profile.id), mapping=self._card(profile))  # type: ignore[arg-type]
        point = (profile.location.lon, profile.location.lat, profile.id)
        pipe.geoadd(keys.directory_geo(spec), point)
        pipe.geoadd(keys.directory_geo_all(), point)
        score = {profile.id: _score(profile.rating)}
        pipe.zadd(keys.directory_rating(), score)
        pipe.zadd(keys.directory_rating_by(spec), score)
        pipe.zadd(keys.directory_specialties(), {spec: 0})

    async def _move(self, doctor_id: str, profile: DoctorProfile | None) -> None:
        """Card in (``profile``) or out (None), atomically out of its old specialty (move.lua),
        retried while a concurrent edit changes the specialty between our read and the
        script."""
        new = profile.specialty if profile is not None else ""
        args: list[Any] = []
        if profile is not None:
            card = self._card(profile)
            args = [profile.location.lon, profile.location.lat, _score(profile.rating)]
            args += [part for pair in card.items() for part in pair]
        else:
            args = [0, 0, 0]
        for _ in range(20):
            raw = await self._redis.hget(keys.directory_doctor(doctor_id), "specialty")
            old = _text(raw) if raw is not None else ""
            was, will = old or new or "-", new or "-"
            reply = await self._move_script.run(
                keys=[
                    keys.directory_doctor(doctor_id), keys.directory_geo_all(),
                    keys.directory_rating(), keys.directory_specialties(),
                    keys.directory_geo(was), keys.directory_rating_by(was),
                    keys.directory_geo(will), keys.directory_rating_by(will),
                ],
                args=[doctor_id, old, new, *args],
            )  # fmt: skip
            if reply.ok:
                return
        raise RuntimeError("the doctor's specialty kept changing")

    async def upsert_doctor(self, profile: DoctorProfile) -> None:
        """Add or refresh a doctor; a changed specialty moves the doctor out of the old one
        in the same atomic step, and an old specialty left empty leaves the list."""
        try:
            await self._move(profile.id, profile)
        finally:
            self._pages.clear()

    async def remove_doctor(self, doctor_id: str) -> None:
        try:
            await self._move(doctor_id, None)
        finally:
            self._pages.clear()

    async def update_rating(self, doctor_id: str, average: float | None, count: int) -> None:
        """Refresh a listed doctor's rating; a doctor not listed (erased) stays out.

        Safe under concurrency: of two updates racing here, the one with the higher count wins
        whatever order they arrive in (see rating.lua).
        """
        spec = await self._redis.hget(keys.directory_doctor(doctor_id), "specialty")
        if spec is None:
            return
        try:
            await self._rate.run(
                keys=[
                    keys.directory_doctor(doctor_id),
                    keys.directory_rating(),
                    keys.directory_rating_by(_text(spec)),
                ],
                args=[count, "" if average is None else average, -average if average else 0.0],
            )
        finally:
            self._pages.clear()

    async def rebuild(self) -> int:
        """Drop the directory and rebuild it from the store's doctors. Returns their number."""
        items = await self._store.query_index("DOCTORS")
        profiles = [
            doctor_profile(item.data)
            for item in items
            if item.sk == store_keys.PROFILE_SK and not item.data.get("erased")
        ]
        old_specs = [
            _text(s) for s in await self._redis.zrange(keys.directory_specialties(), 0, -1)
        ]
        stale = [
            k async for k in self._redis.scan_iter(match=keys.directory_doctor("*"), count=1000)
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for spec in old_specs:
                pipe.delete(keys.directory_geo(spec), keys.directory_rating_by(spec))
            pipe.delete(
                keys.directory_geo_all(), keys.directory_rating(), keys.directory_specialties()
            )
            for key in stale:
                pipe.delete(key)
            await pipe.execute()
        for start in range(0, len(profiles), 500):
            async with self._redis.pipeline(transaction=False) as pipe:
                for profile in profiles[start : start + 500]:
                    self._add(pipe, profile)
                await pipe.execute()
        self._pages.clear()
        return len(profiles)

    # --- queries ----------------------------------------------------------------------------
    async def specialties(self) -> SpecialtyList:
        """Every specialty with at least one listed doctor, by slug."""
        slugs = sorted(
            _text(s) for s in await self._redis.zrange(keys.directory_specialties(), 0, -1)
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for slug in slugs:
                pipe.zcard(keys.directory_geo(slug))
            counts = await pipe.execute()
        return SpecialtyList(
            items=[
                Specialty(slug=s, doctors=int(c)) for s, c in zip(slugs, counts, strict=True) if c
            ]
        )

    def _query(
        self,
        specialty: str | None,
        lat: float | None,
        lon: float | None,
        max_km: float | None,
        min_rating: float | None,
        limit: int | None,
    ) -> _Query:
        if specialty is not None:
            specialty = _validate.specialty(specialty)
        if (lat is None) != (lon is None):
            raise _invalid("lat and lon go together", "location_required", "lat")
        if lat is not None and lon is not None:
            lat, lon = _validate.latitude(lat), _validate.longitude(lon)
        if max_km is not None:
            if lat is None:
                raise _invalid("max_km needs both lat and lon", "location_required", "max_km")
            if not 0 < max_km <= EARTH_RADIUS_KM:
                raise _invalid(
                    f"max_km must be above 0 and at most {EARTH_RADIUS_KM:.0f}",
                    "invalid_distance",
                    "max_km",
                )
        rating = 0.0 if min_rating is None else min_rating
        if not 0 <= rating <= 5:
            raise _invalid("min_rating must be from 0 to 5", "invalid_rating", "min_rating")
        size = check_limit(LIMIT_DEFAULT if limit is None else limit)
        return _Query(
            specialty=specialty, lat=lat, lon=lon, max_km=max_km, min_rating=rating, limit=size
        )

    @staticmethod
    def _offset(cursor: str | None, query: _Query) -> int:
        if cursor is None:
            return 0
        try:
            state = _cursor_decoder.decode(decode_cursor(cursor))
            offset = state["o"]
            fingerprint = state["f"]
        except (msgspec.DecodeError, KeyError, TypeError):
            raise invalid_cursor() from None
        if (
            not isinstance(offset, int)
            or isinstance(offset, bool)
            or not 0 < offset <= MAX_OFFSET
            or fingerprint != query.fingerprint()
        ):
            raise invalid_cursor("cursor is not valid for this search")
        return offset

    @staticmethod
    def _cursor(offset: int, query: _Query) -> str | None:
        if offset > MAX_OFFSET:
            return None
        return encode_cursor(_encoder.encode({"o": offset, "f": query.fingerprint()}))

    async def search(
        self,
        *,
        specialty: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        max_km: float | None = None,
        min_rating: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage:
        """Search semantics of docs/API.md: exact specialty, distance cut, rating floor; ordered by
        distance (then id) when a location is given, else by rating (best first, then id)."""
        query = self._query(specialty, lat, lon, max_km, min_rating, limit)
        offset = self._offset(cursor, query)
        try:
            page, _ = await self._pages.get(
                (query, offset), lambda: self._search(query, offset), _still_requestable
            )
        except RedisError as exc:
            raise Unavailable("the directory does not answer", code="redis_unavailable") from exc
        return page

    async def _search(self, query: _Query, offset: int) -> tuple[SearchPage, float]:
        """The page and the epoch ms its first shown ``next_open_slot`` closes to requests."""
        want = offset + query.limit + 1
        distances: dict[str, float] = {}
        if query.lat is not None and query.lon is not None:
            geo_key = (
                keys.directory_geo(query.specialty) if query.specialty else keys.directory_geo_all()
            )
            filtered = query.min_rating > 0
            rating_key = (
                keys.directory_rating_by(query.specialty)
                if query.specialty
                else keys.directory_rating()
            )
            # With a rating floor, read the nearest doctors in growing batches until the page
            # is full or the radius is exhausted: the work follows the page, not the directory.
            count = max(64, want * 4) if filtered else want
            while True:
                rows: list[Any] = await self._redis.geosearch(
                    geo_key,
                    longitude=query.lon,
                    latitude=query.lat,
                    radius=query.max_km if query.max_km is not None else EARTH_RADIUS_KM,
                    unit="km",
                    sort="ASC",
                    count=count,
                    withdist=True,
                )
                ranked = sorted((float(row[1]), _text(row[0])) for row in rows)
                if filtered and ranked:
                    scores = await self._redis.zmscore(rating_key, [m for _, m in ranked])
                    ranked = [
                        r
                        for r, s in zip(ranked, scores, strict=True)
                        if s is not None and float(s) <= -query.min_rating
                    ]
                if not filtered or len(ranked) >= want or len(rows) < count:
                    break
                count *= 4
            distances = {m: d for d, m in ranked}
            ids = [m for _, m in ranked[offset:want]]
        else:
            rating_key = (
                keys.directory_rating_by(query.specialty)
                if query.specialty
                else keys.directory_rating()
            )
            top: float | str = -query.min_rating if query.min_rating > 0 else "+inf"
            members = await self._redis.zrange(
                rating_key, "-inf", top, byscore=True, offset=offset, num=query.limit + 1
            )
            ids = [_text(m) for m in members]
        more = len(ids) > query.limit
        ids = ids[: query.limit]
        cards, closes = await self._cards(ids, distances)
        page = SearchPage(
            items=cards, next_cursor=self._cursor(offset + query.limit, query) if more else None
        )
        return page, closes

    async def _cards(
        self, ids: list[str], distances: dict[str, float]
    ) -> tuple[list[DoctorCard], float]:
        """Public cards and next open slot of ``ids``, in order, and the epoch ms the first of
        those slots closes to requests: one pipelined round trip."""
        closes = math.inf
        if not ids:
            return [], closes
        # The first slot still open to requests: they close DECISION_LEAD_MS before the start.
        after = f"({now_ms() + DECISION_LEAD_MS}"
        async with self._redis.pipeline(transaction=False) as pipe:
            for doctor_id in ids:
                pipe.hgetall(keys.directory_doctor(doctor_id))
                pipe.zrange(
                    keys.doctor_open_slots(doctor_id),
                    after,
                    "+inf",
                    byscore=True,
                    offset=0,
                    num=1,
                    withscores=True,
                )
            replies = await pipe.execute()
        cards: list[DoctorCard] = []
        for i, doctor_id in enumerate(ids):
            raw, nxt = replies[2 * i], replies[2 * i + 1]
            if not raw:
                continue  # removed between the index read and this one
            card = {_text(k): _text(v) for k, v in raw.items()}
            avg = card.get("avg", "")
            distance = distances.get(doctor_id)
            if nxt:
                closes = min(closes, int(nxt[0][1]) - DECISION_LEAD_MS)
            cards.append(
                DoctorCard(
                    id=doctor_id,
                    name=card["name"],
                    specialty=card["specialty"],
                    crm=card["crm"],
                    uf=card["uf"],
                    city=card.get("city") or None,
                    rating=Rating(
                        average=float(avg) if avg else None, count=int(card.get("count", 0))
                    ),
                    price=Money(amount_cents=int(card["price_cents"])),
                    distance_km=round(distance, 3) if distance is not None else msgspec.UNSET,
                    next_open_slot=to_rfc3339(int(nxt[0][1])) if nxt else msgspec.UNSET,
                )
            )
        return cards, closes
