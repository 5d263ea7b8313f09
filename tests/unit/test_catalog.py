"""TaskCatalog and payload codecs: declaration, merging, lookup errors, validation paths."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from zodworker import CatalogError, JobSpecError, PayloadValidationError, TaskCatalog, task
from zodworker.catalog import PayloadCodec, build_spec, build_specs


class User(BaseModel):
    email: str = Field(pattern=r"@")


class Signup(BaseModel):
    user: User
    at: datetime


class Ping(msgspec.Struct):
    n: int
    tags: list[str] = []


class Accounts(TaskCatalog):
    signup = task(Signup, queue_name="accounts")
    ping = task(Ping)


def test_class_catalogs_name_their_tasks() -> None:
    catalog = Accounts()
    assert sorted(catalog) == ["ping", "signup"]
    assert Accounts.signup.identifier == "signup"
    assert catalog["signup"].queue_name == "accounts"
    assert catalog.resolve(Accounts.ping) is catalog["ping"]


def test_keyword_catalogs_and_merging() -> None:
    extra = TaskCatalog(**{"events.invokeDispatcher": task(Ping), "other": task(Signup)})
    merged = Accounts() | extra
    assert sorted(merged) == ["events.invokeDispatcher", "other", "ping", "signup"]
    with pytest.raises(CatalogError, match="both catalogs: ping"):
        Accounts() | TaskCatalog(ping=task(Ping))
    with pytest.raises(CatalogError, match="declared twice"):
        Accounts(ping=task(Ping))
    with pytest.raises(CatalogError, match="expected task"):
        TaskCatalog(bad=Ping)  # type: ignore[arg-type]


def test_membership_and_get_do_not_raise() -> None:
    catalog = Accounts()
    assert "ping" in catalog and "nope" not in catalog
    assert catalog.get("nope") is None and catalog.get("ping") is catalog["ping"]


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(CatalogError, match=r"unknown task 'sigup'; did you mean 'signup'\?"):
        Accounts()["sigup"]
    with pytest.raises(CatalogError, match="known: ping, signup"):
        Accounts()["zzz"]
    with pytest.raises(CatalogError, match="not from this catalog"):
        TaskCatalog(ping=task(Signup)).resolve(Accounts.ping)


def test_bad_task_options_are_rejected_at_declaration() -> None:
    with pytest.raises(JobSpecError, match="job_key_mode"):
        task(Ping, job_key_mode="upsert")  # type: ignore[arg-type]


def test_pydantic_errors_name_the_nested_field() -> None:
    codec = PayloadCodec(Signup)
    with pytest.raises(PayloadValidationError) as info:
        codec.validate({"user": {"email": "nope"}, "at": "2030-01-01T00:00:00Z"}, task="signup")
    assert info.value.field == "payload.user.email"
    assert info.value.task == "signup"
    valid = codec.validate({"user": {"email": "a@b"}, "at": "2030-01-01T00:00:00Z"}, task="s")
    assert valid.at == datetime(2030, 1, 1, tzinfo=UTC)
    assert codec.to_json(valid) == {"user": {"email": "a@b"}, "at": "2030-01-01T00:00:00Z"}


def test_msgspec_payloads_validate_and_round_trip() -> None:
    codec = PayloadCodec(Ping)
    assert codec.validate({"n": 1}, task="ping") == Ping(n=1)
    assert codec.to_json(Ping(n=2, tags=["a"])) == {"n": 2, "tags": ["a"]}
    with pytest.raises(PayloadValidationError) as info:
        codec.validate({"n": "one"}, task="ping")
    assert info.value.field == "payload.n"
    with pytest.raises(PayloadValidationError):
        codec.validate(Ping(n="x"), task="ping")  # type: ignore[arg-type]  # built unchecked


_ITEMS = st.lists(
    st.one_of(
        st.tuples(
            st.just("signup"),
            st.one_of(
                st.builds(
                    lambda email, day: {
                        "user": {"email": email},
                        "at": f"2026-01-{day:02d}T00:00Z",
                    },
                    st.sampled_from(["a@b", "x@y.z", "no-at-sign"]),
                    st.integers(1, 28),
                ),
                st.just({"user": {}}),
                st.builds(
                    lambda: Signup(user=User(email="m@n"), at=datetime(2026, 1, 1, tzinfo=UTC))
                ),
            ),
        ),
        st.tuples(
            st.sampled_from(["ping", Accounts.ping]),
            st.one_of(
                st.builds(lambda n: {"n": n}, st.integers(-5, 5)),
                st.just({"n": "three"}),
                st.builds(lambda n: Ping(n=n, tags=["t"]), st.integers(0, 3)),
            ),
        ),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(_ITEMS)
def test_a_batch_builds_what_one_by_one_builds_and_fails_alike(items: list[Any]) -> None:
    catalog = Accounts()

    def outcome(build: Any) -> Any:
        try:
            return build()
        except PayloadValidationError as exc:
            return ("error", exc.task, exc.field, str(exc))

    one_by_one = outcome(lambda: [build_spec(catalog, t, p, {}) for t, p in items])
    assert outcome(lambda: build_specs(catalog, items)) == one_by_one
