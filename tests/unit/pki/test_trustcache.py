"""smimegate.pki.trustcache: remembered trust decisions and when they are forgotten."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from smimegate.pki import trust
from smimegate.pki.trustcache import TrustCache
from smimegate.smime.sign import sign
from smimegate.smime.unwrap import unwrap
from tests.unit.pki import pkibuild as pb
from tests.unit.pki.pkibuild import NOW


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def pki() -> dict[str, pb.Issued]:
    root = pb.root()
    inter = pb.ca(root)
    return {"root": root, "inter": inter, "alice": pb.ee(inter),
            "short": pb.ee(inter, email="short@example.test", days=30.0 + 10 / 86400)}


def anchors(pki: dict[str, pb.Issued], *crls: Any) -> trust.TrustAnchors:
    return trust.TrustAnchors(roots=(pki["root"].cert,), intermediates=(pki["inter"].cert,),
                              crls=crls)


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Count the real trust.check runs (the cache calls it through the module)."""
    seen: list[str] = []
    real = trust.check

    def counting(cert: Any, *args: Any, **kwargs: Any) -> trust.TrustResult:
        seen.append(kwargs["purpose"])
        return real(cert, *args, **kwargs)

    monkeypatch.setattr(trust, "check", counting)
    yield seen


def test_same_answer_as_check_and_asked_once(pki: dict[str, pb.Issued],
                                             calls: list[str]) -> None:
    cache, held = TrustCache(clock=Clock(NOW)), anchors(pki)
    first = cache.check(pki["alice"].cert, held, purpose="sign")
    again = cache.check(pki["alice"].cert, held, purpose="sign")
    assert first == again
    assert first.trusted and first.path[-1] == pki["root"].cert
    assert calls == ["sign"]
    cache.check(pki["alice"].cert, held, purpose="encrypt")  # another purpose: its own entry
    assert calls == ["sign", "encrypt"]
    assert len(cache) == 2


def test_another_anchors_value_forgets_everything(pki: dict[str, pb.Issued],
                                                 calls: list[str]) -> None:
    cache = TrustCache(clock=Clock(NOW))
    assert cache.check(pki["alice"].cert, anchors(pki), purpose="sign").trusted
    revoked = pb.crl(pki["inter"], [(pki["alice"].cert, NOW - dt.timedelta(hours=1), None)])
    result = cache.check(pki["alice"].cert, anchors(pki, revoked), purpose="sign")
    assert not result.trusted and result.revocation == "revoked"
    assert len(calls) == 2


def test_ttl_and_clear(pki: dict[str, pb.Issued], calls: list[str]) -> None:
    clock = Clock(NOW)
    cache, held = TrustCache(ttl=60, clock=clock), anchors(pki)
    cache.check(pki["alice"].cert, held, purpose="sign")
    clock.now += 59
    cache.check(pki["alice"].cert, held, purpose="sign")
    assert len(calls) == 1
    clock.now += 2
    cache.check(pki["alice"].cert, held, purpose="sign")
    assert len(calls) == 2
    cache.clear()
    assert len(cache) == 0
    cache.check(pki["alice"].cert, held, purpose="sign")
    assert len(calls) == 3


def test_never_past_the_certificate_expiry(pki: dict[str, pb.Issued],
                                           calls: list[str]) -> None:
    short = pki["short"].cert
    clock = Clock(short.not_valid_after_utc - dt.timedelta(seconds=5))
    cache, held = TrustCache(ttl=60, clock=clock), anchors(pki)
    assert cache.check(short, held, purpose="encrypt").trusted
    clock.now += 10  # well within the ttl, but the certificate has expired
    late = cache.check(short, held, purpose="encrypt")
    assert not late.trusted and "expired" in (late.reason or "")
    assert len(calls) == 2


def test_never_past_a_crl_next_update(pki: dict[str, pb.Issued], calls: list[str]) -> None:
    current = pb.crl(pki["inter"], next_update=NOW + dt.timedelta(seconds=20))
    of_root = pb.crl(pki["root"])  # "good" needs a current CRL for every link
    clock = Clock(NOW)
    cache, held = TrustCache(ttl=60, clock=clock), anchors(pki, current, of_root)
    assert cache.check(pki["alice"].cert, held, purpose="sign").revocation == "good"
    clock.now += 30  # the CRL went stale: "unknown" now, not the remembered "good"
    stale = cache.check(pki["alice"].cert, held, purpose="sign")
    assert stale.trusted and stale.revocation == "unknown"
    assert len(calls) == 2


def test_extra_certificates_are_part_of_the_key(pki: dict[str, pb.Issued],
                                                calls: list[str]) -> None:
    cache = TrustCache(clock=Clock(NOW))
    roots_only = trust.TrustAnchors(roots=(pki["root"].cert,))
    alone = cache.check(pki["alice"].cert, roots_only, purpose="sign")
    assert not alone.trusted  # the intermediate is missing
    helped = cache.check(pki["alice"].cert, roots_only, purpose="sign",
                         extra_certs=(pki["inter"].cert,))
    assert helped.trusted
    assert len(calls) == 2


def test_bounded(pki: dict[str, pb.Issued]) -> None:
    cache, held = TrustCache(max_entries=1, clock=Clock(NOW)), anchors(pki)
    cache.check(pki["alice"].cert, held, purpose="sign")
    cache.check(pki["alice"].cert, held, purpose="encrypt")
    assert len(cache) == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ttl"):
        TrustCache(ttl=0)
    with pytest.raises(ValueError, match="max_entries"):
        TrustCache(max_entries=0)


def test_apply_trust_matches_trust_apply_trust(pki: dict[str, pb.Issued],
                                               calls: list[str]) -> None:
    alice = pki["alice"]
    entity = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    signed = sign(entity, alice.key, alice.cert, (pki["inter"].cert,))
    layer = unwrap(signed, ()).layers[0]
    roots_only = trust.TrustAnchors(roots=(pki["root"].cert,))
    clock = Clock(dt.datetime.now(dt.UTC))
    cache = TrustCache(clock=clock)
    expected = trust.apply_trust(layer, roots_only)
    calls.clear()
    got = cache.apply_trust(layer, roots_only)
    assert got == expected and got.signers[0].trusted
    assert cache.apply_trust(layer, roots_only) == expected
    assert len(calls) == 1
    # A signature that does not verify: trust.apply_trust's own wording, no path check.
    broken = dataclasses.replace(layer, signers=(dataclasses.replace(layer.signers[0],
                                                                     valid=False),))
    out = cache.apply_trust(broken, roots_only)
    assert out == trust.apply_trust(broken, roots_only)
    assert out.signers[0].trust_info == "signature not valid"
    assert len(calls) == 1
