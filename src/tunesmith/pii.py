"""Find and redact personal data and secrets in text.

Candidates are found by pattern and then confirmed by the checksum or validity rule of
their kind, so numbers that merely look like card numbers are not flagged: Luhn for
cards, mod-97 for IBANs and the SSA rules for SSNs (python-stdnum), libphonenumber for
phone numbers (phonenumbers), the standard library for IP addresses. Secret patterns are
written here because the secret scanners (detect-secrets, gitleaks) scan files with
their own settings and global state, not strings held in memory; the patterns follow
theirs for the common providers. Reports name the kind and place, never the value.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import phonenumbers
from stdnum import iban, luhn
from stdnum.us import ssn

KINDS = ("email", "phone", "credit_card", "iban", "ssn", "ip_address", "secret")


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int
    end: int


_DIGIT = re.compile(r"\d")
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d \t().\-/]{5,22}\d")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_SECRETS = [
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}\b"),
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"),  # OpenAI / Anthropic style keys
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),  # Slack
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API key
    re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}\b"),  # Stripe
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    # key = value assignments whose value looks generated (letters and digits, 16+ chars)
    re.compile(
        r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password|passwd)\b"
        r"[\"']?\s*[:=]\s*[\"']?(?=[A-Za-z0-9_\-/+=.]*\d)(?=[A-Za-z0-9_\-/+=.]*[A-Za-z])[A-Za-z0-9_\-/+=.]{16,}"
    ),
]


def _overlaps(match: PiiMatch, taken: list[PiiMatch]) -> bool:
    return any(match.start < t.end and t.start < match.end for t in taken)


def find_pii(text: str, region: str = "US") -> list[PiiMatch]:
    """All PII and secrets in `text`, without overlaps, in order of position."""
    found: list[PiiMatch] = []

    def add(kind: str, start: int, end: int) -> None:
        m = PiiMatch(kind, start, end)
        if not _overlaps(m, found):
            found.append(m)

    for pattern in _SECRETS:
        for m in pattern.finditer(text):
            add("secret", m.start(), m.end())
    for m in _EMAIL.finditer(text):
        add("email", m.start(), m.end())
    for m in _IBAN.finditer(text):
        if iban.is_valid(m.group()):
            add("iban", m.start(), m.end())
    for m in _SSN.finditer(text):
        if ssn.is_valid(m.group()):
            add("ssn", m.start(), m.end())
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn.is_valid(digits):
            add("credit_card", m.start(), m.end())
    for pattern in (_IPV4, _IPV6):
        for m in pattern.finditer(text):
            try:
                ipaddress.ip_address(m.group())
            except ValueError:
                continue
            add("ip_address", m.start(), m.end())
    # libphonenumber is slow on digit-heavy text, so it only sees runs that could be phone numbers
    for candidate in _PHONE_CANDIDATE.finditer(text):
        if len(_DIGIT.findall(candidate.group())) < 7:
            continue
        lo = max(0, candidate.start() - 2)
        for m in phonenumbers.PhoneNumberMatcher(
            text[lo : candidate.end() + 2], region, leniency=phonenumbers.Leniency.VALID
        ):
            add("phone", lo + m.start, lo + m.end)
    return sorted(found, key=lambda m: m.start)


def redact(text: str, matches: list[PiiMatch] | None = None) -> str:
    """`text` with each PII span replaced by a placeholder such as [EMAIL]."""
    matches = find_pii(text) if matches is None else matches
    out, last = [], 0
    for m in matches:
        out += [text[last : m.start], f"[{m.kind.upper()}]"]
        last = m.end
    out.append(text[last:])
    return "".join(out)
