"""The image's lock file matches pyproject.toml's runtime dependencies (offline check)."""

from __future__ import annotations

from packaging.utils import canonicalize_name

from tests.infra._lock import LOCK, ROOT_MARK, read_lock, runtime_requirements


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    """Each [project] dependency is locked at a version its specifier admits."""
    pins = read_lock()
    for req in runtime_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in {LOCK.name}: run `make lock`"
        assert req.specifier.contains(pins[name].version, prereleases=True), (
            f"{req.name}=={pins[name].version} does not satisfy {req}: run `make lock`"
        )
        assert ROOT_MARK in pins[name].via, f"{req.name} is not locked as a direct dependency"


def test_lock_has_no_direct_dependency_pyproject_dropped() -> None:
    """Packages the lock says pyproject.toml asks for are exactly pyproject's dependencies."""
    direct = {name for name, pin in read_lock().items() if ROOT_MARK in pin.via}
    assert direct == {canonicalize_name(r.name) for r in runtime_requirements()}


def test_every_pin_is_reachable_and_hashed() -> None:
    """Every pinned package has hashes and is required by another pin or by pyproject.toml."""
    pins = read_lock()
    assert len(pins) > len(runtime_requirements())
    for pin in pins.values():
        assert pin.hashes, pin.name
        assert all(h.startswith("sha256:") for h in pin.hashes), pin.name
        parents = {canonicalize_name(v.split(" ")[0].split("[")[0]) for v in pin.via}
        assert pin.via, f"{pin.name} is in the lock for no reason: run `make lock`"
        assert ROOT_MARK in pin.via or parents & pins.keys(), (pin.name, pin.via)


def test_lock_is_refreshed_by_make_lock() -> None:
    """The lock names `make lock` as the command that regenerates it."""
    assert "#    make lock" in LOCK.read_text().splitlines()[1]


def test_uv_is_asked_for_in_one_range_everywhere() -> None:
    """The Makefile's bootstrap and the dev extra ask for the same uv range, and the image's
    pinned uv is inside it: three places name uv, and they must not drift apart."""
    import re
    import tomllib

    from packaging.requirements import Requirement

    root = LOCK.parent
    make = re.search(r"^UV_REQ := (.+)$", (root / "Makefile").read_text(), re.MULTILINE)
    assert make is not None, "Makefile: UV_REQ not found"
    dev = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    extra = [Requirement(r) for r in dev["dev"] if Requirement(r).name == "uv"]
    image = re.search(r"pip install [^\n]*\buv==([\w.]+)", (root / "Dockerfile").read_text())
    assert image is not None, "Dockerfile: uv==<version> not found"
    assert [str(r.specifier) for r in extra] == [str(Requirement(make.group(1)).specifier)]
    assert extra[0].specifier.contains(image.group(1))
