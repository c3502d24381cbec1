"""decide reads no property but those SENDER_PROPERTIES and RECIPIENT_PROPERTIES name: the
explain page (smimegate.service.explain) shows exactly these as the values that decided."""

from __future__ import annotations

import itertools

import pytest

from smimegate.policy import EffectivePolicy, Recipient, Sender, decide, resolve
from smimegate.policy.decide import RECIPIENT_PROPERTIES, SENDER_PROPERTIES


class Recorded(EffectivePolicy):
    """An EffectivePolicy that notes every property asked of it."""

    asked: set[str]

    def __getitem__(self, name: str):  # type: ignore[no-untyped-def]
        self.asked.add(name)
        return super().__getitem__(name)


def recorded(**values: str) -> Recorded:
    policy = Recorded(resolve(None, None, values).items)
    object.__setattr__(policy, "asked", set())
    return policy


@pytest.mark.parametrize(("locality", "authorised", "pqc", "mode"), list(itertools.product(
    ("internal", "external"), (True, False), ("never", "prefer", "only"),
    ("allow", "mandatory", "none"))))
def test_decide_reads_only_the_listed_properties(locality: str, authorised: bool, pqc: str,
                                                 mode: str) -> None:
    sender = recorded(locality="internal", pqc=pqc)
    rcpts = [recorded(locality=locality, encrypt_mode=mode, pqc=pqc) for _ in range(2)]
    decide(Sender("a@x.test", sender, authorised, True, True),
           [Recipient("b@y.test", rcpts[0], True, has_pq_certificate=True),
            Recipient("c@y.test", rcpts[1], False, holds_key=True)], "[encrypt] hi")
    assert sender.asked <= set(SENDER_PROPERTIES)
    assert set().union(*(r.asked for r in rcpts)) <= set(RECIPIENT_PROPERTIES)
    assert "sign" in sender.asked or not authorised
