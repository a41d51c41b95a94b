"""PII: each kind found when real, not flagged when it only looks similar; redaction."""

from __future__ import annotations

import pytest

from tunesmith.pii import find_pii, redact


@pytest.mark.parametrize(
    "kind,text",
    [
        ("email", "write to jane.doe+tickets@example.co.uk today"),
        ("phone", "call me at +1 415-555-2671"),
        ("phone", "Tel. +44 20 7946 0958"),
        ("credit_card", "card 4111 1111 1111 1111 exp 12/27"),
        ("credit_card", "5500-0000-0000-0004"),
        ("iban", "IBAN: DE89 3704 0044 0532 0130 00"),
        ("iban", "GB82WEST12345698765432"),
        ("ssn", "SSN 123-45-6789"),
        ("ip_address", "server at 192.168.10.254 is down"),
        ("ip_address", "v6 host 2001:db8::8a2e:370:7334"),
        ("secret", "key AKIAIOSFODNN7EXAMPLE leaked"),
        ("secret", "token ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("secret", "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz123456"),
        ("secret", "password: Xk9qT2vLm8Rz4wPb"),
        ("secret", "-----BEGIN RSA PRIVATE KEY-----"),
    ],
)
def test_true_positives(kind, text):
    assert kind in {m.kind for m in find_pii(text)}, find_pii(text)


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 is late",  # fails the Luhn check
        "DE89 3704 0044 0532 0130 01",  # fails mod-97
        "SSN 000-12-3456 is not valid",  # area 000 is never issued
        "version 1.2.3 and 999.1.1.1",  # not an IP address
        "at 12:30:45 on 2024-05-01",  # times and dates
        "the meeting is in room 4155",  # a short number
        "password: hunter2",  # too short to look generated
        "email me at support at example dot com",
        "my ticket number is 1234567",
    ],
)
def test_false_positives(text):
    assert find_pii(text) == []


def test_redaction_replaces_every_span():
    text = "Mail jane@example.com or call +1 415-555-2671, card 4111111111111111."
    assert redact(text) == "Mail [EMAIL] or call [PHONE], card [CREDIT_CARD]."
