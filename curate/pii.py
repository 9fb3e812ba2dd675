"""PII redaction: emails, phone numbers, IP addresses, payment cards and IBANs.

Most documents hold no PII at all, so the common case is vectorised: one RE2 pattern per
kind, OR-ed together (``pyarrow.compute.match_substring_regex``), marks the documents that
contain any *candidate*. Only those go through the precise per-match checks below, in Python,
and only the ones that really held PII get a new text (``replace_with_mask``). Each pre-filter
is a superset of what its precise check accepts (tested), so skipping a document never skips
PII. On the candidates the per-kind pre-filters run again (cheap: few rows) so a document is
only searched for the kinds it may hold, and the precise regexes only run near an ``@`` or
near runs of digits (Python's regex engine is slow to scan a whole document; the windowed
search is tested equal to a whole-text scan).

Precise rules (what is redacted and what is deliberately left alone):

- **email**: ``local@domain.tld`` (``+``, dots, subdomains, letters of any script); not
  ``logo@2x.png``-style asset names (a file extension as the "TLD"), local parts with ``..``
  or hosts without a TLD.
- **ip**: IPv4 dotted quads with octets <= 255 and no leading zeros, not part of a longer
  dotted number (``1.2.3.4.5``) and not after a version cue (``version 1.2.3.4``, ``v1.2.3.4``,
  ``build``, ``release``): a four-part version is a version. IPv6 as Python's ``ipaddress``
  parses it (``::`` compression, embedded IPv4), with at least one decimal digit, so C++
  ``std::`` scopes, ``dead::beef`` words, times (``12:30:45``) and MAC addresses are not IPs.
  Loopback, private (RFC 1918, fc00::/7), link-local, multicast and unspecified addresses
  identify no one and are kept unless ``redact_private_ips``.
- **credit_card**: 13-19 digits, contiguous or grouped 4-4-4-4(-3) / 4-6-5 / 4-6-4 with one
  consistent space or hyphen, with a card network's prefix and length (Visa, Mastercard,
  Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir) and a valid Luhn checksum.
- **iban**: upper-case country code of the IBAN registry, two check digits, the BBAN
  (optionally in groups of four), the country's exact length and ``mod 97 == 1``.
- **phone**: a run of digit groups with single separators (space, ``.``, ``-``, ``/``,
  parentheses), then one of: international (``+`` and 8-15 digits; a ``(0)`` trunk is not
  counted), ``00`` international prefix (10-17 digits), North American ``(415) 555-2671`` /
  ``415-555-2671`` / ``1-800-555-0199``, national with a trunk ``0`` (``020 7946 0958``,
  ``06 12 34 56 78``, ``030/12345678``: 9-12 digits, groups of 2+), or any 7-15 digits after a
  phone cue (``Tel:``, ``phone``, ``call``, ``fax``, ``mobile``...). Never: dates (``2024-11-24``,
  ``24/11/2024``, ``24.11.2024``), times, ZIP+4 (``02134-1234``), ISBNs (after ``ISBN`` or
  grouped with single digits), prices and thousands (``1 234 567``, ``1,234.56``: no trunk
  ``0``, no cue), years, versions, or plain long numbers without a ``+`` or a cue.

Where two findings overlap the more specific kind wins: email, iban, credit_card, ip, phone.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from curate.config import StageConfig
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import DOCUMENTS, read_shard

STAGE_NAME = "pii"
CONTAINS_PII = "contains_pii"
Kind = Literal["email", "phone", "ip", "credit_card", "iban"]
KINDS: tuple[str, ...] = ("email", "phone", "ip", "credit_card", "iban")
PRIORITY: tuple[str, ...] = ("email", "iban", "credit_card", "ip", "phone")
"""Overlap resolution: a span found by an earlier kind wins over a later kind's span."""
COUNTS_TYPE = pa.struct([pa.field(k, pa.int32(), nullable=False) for k in KINDS])


class PiiConfig(StageConfig):
    """Which kinds to redact, how placeholders look, and whether PII drops the document."""

    kinds: list[Kind] = list(KINDS)
    placeholder: str = "<{KIND}>"
    """Replacement text; ``{KIND}`` is EMAIL, PHONE, IP, CREDIT_CARD or IBAN, ``{kind}`` the
    lower-case name. A constant such as ``[REDACTED]`` is fine too."""
    columns: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    """String columns to redact; counts add up over them."""
    redact_private_ips: bool = False
    """Also redact loopback/private/link-local/multicast addresses (they identify no one)."""
    drop_documents_with_pii: bool = False
    """Send documents that held any PII to ``rejected/`` (reason ``contains_pii``), redacted."""

    @field_validator("kinds")
    @classmethod
    def _unique(cls, kinds: list[str]) -> list[str]:
        return sorted(set(kinds), key=KINDS.index)

    def placeholder_for(self, kind: str) -> str:
        return self.placeholder.replace("{KIND}", kind.upper()).replace("{kind}", kind)


# --- vectorised pre-filters (RE2): supersets of the precise checks ------------------------

PREFILTERS: dict[str, str] = {
    "email": r"@[\pL\pN][\pL\pN\pM_.\-]*\.\pL{2}",
    "ip": r"\d\.\d{1,3}\.\d{1,3}\.\d|::|[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:",
    "credit_card": r"\d(?:[ -]?\d){12}",
    "iban": r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    "phone": r"\d(?:[ ()./\-\x{a0}]{0,5}\d){6}",
}


def candidate_mask(texts: pa.Array | pa.ChunkedArray, kinds: Iterable[str]) -> np.ndarray:
    """True for each text that may hold PII of ``kinds`` (nulls: False); one RE2 pass."""
    pattern = "|".join(f"(?:{PREFILTERS[k]})" for k in kinds)
    if not pattern:
        return np.zeros(len(texts), dtype=bool)
    hit = pc.fill_null(pc.match_substring_regex(texts, pattern), False)
    return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)


# --- precise detectors ---------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Finding:
    start: int
    end: int
    kind: str


_NBSP = "\u00a0"
EMAIL_RE = re.compile(
    r"(?<![\w.%+\-])[\w%+\-](?:[\w.%+\-]{0,62}[\w%+\-])?"
    r"@(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w\-@])")
ASSET_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "bmp", "ico",
                              "tif", "tiff", "css", "js", "mjs", "map", "pdf", "woff", "woff2"})
IPV4_RE = re.compile(r"(?<![\w.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?!\w|\.\d)", re.ASCII)
IPV6_RE = re.compile(
    r"(?<![\w:.])(?:(?:[0-9A-Fa-f]{0,4}:){2,6}\d{1,3}(?:\.\d{1,3}){3}"
    r"|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w:]|\.\d)", re.ASCII)
CARD_RE = re.compile(
    r"(?<![\w+\-.,/])(?:\d{4}([ \-])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?"
    r"|\d{4}([ \-])\d{6}\2\d{4,5}|\d{13,19})(?![\w\-]|[.,/]\d)", re.ASCII)
IBAN_RE = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,30}(?![a-z0-9])", re.ASCII)
_SP = f"[ {_NBSP}]"
_PH_GROUP = r"(?:\(\d{1,5}\)|\d{1,15}(?!\d))"
_PH_SEP = rf"(?:{_SP}?[.\-/]{_SP}?|{_SP}|(?<=\))|(?=\())"
PHONE_RE = re.compile(rf"(?<![\w+\-./,:@#$€£¥%])(?:\+{_SP}?)?{_PH_GROUP}"
                      rf"(?:{_PH_SEP}{_PH_GROUP}){{0,7}}(?![\w@]|[.,:\-/]?\d)", re.ASCII)
NANP_RE = re.compile(rf"(?:1[ .\-{_NBSP}]?)?(?:\([2-9]\d\d\){_SP}?|[2-9]\d\d[ .\-{_NBSP}])"
                     rf"[2-9]\d\d[ .\-{_NBSP}]\d{{4}}", re.ASCII)
DATE_RE = re.compile(r"(?<!\d)(?:\d{1,2}[./\-]\d{1,2}[./\-](?:\d{4}|\d{2})"
                     r"|(?:1[6-9]|2\d)\d\d[./\-]\d{1,2}[./\-]\d{1,2})(?!\d)", re.ASCII)
IPV6_HINT_RE = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]", re.ASCII)
"""An IPv6 address without ``::`` has eight groups, so this; with ``::``, that literal."""
ZIP4_RE = re.compile(r"\d{5}-\d{4}", re.ASCII)
PHONE_CUE = re.compile(
    r"(?i)(?:\b(?:t[ée]l|t[ée]l[ée]phone|telephone|telefon|tel[ée]fono|phone|mobile|cell"
    r"|cellphone|fax|call|whatsapp|hotline)\b|[☎📞📱])[^\d\n]{0,15}$")
VERSION_CUE = re.compile(
    r"(?i)\b(?:version|versions|ver|v|release|rel|build|rev|revision|firmware|kernel)\.?:?\s*$")
ISBN_CUE = re.compile(r"(?i)\bISBN(?:-?1[03])?:?\s*$")
_CONTEXT = 32

IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
"""Country -> IBAN length, from the SWIFT IBAN registry."""

_KEEP_NETS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4", "255.255.255.255/32",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8"))


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum (every second digit from the right doubled) is a multiple of 10."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_network(digits: str) -> str | None:
    """The network whose prefix and length fit ``digits``, or None."""
    n, p2, p4 = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if 2200 <= p4 <= 2204 and 16 <= n <= 19:
        return "mir"
    if (p4 == 6011 or p2 == 65 or 644 <= int(digits[:3]) <= 649) and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= int(digits[:3]) <= 305 or p4 == 3095 or p2 in (36, 38, 39)) and 14 <= n <= 19:
        return "diners"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    if (p2 == 50 or 56 <= p2 <= 69) and 12 <= n <= 19:
        return "maestro"
    return None


def is_card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and card_network(digits) is not None and luhn_ok(digits)


def iban_ok(compact: str) -> bool:
    """Registry length for the country and ISO 7064 mod 97-10 checksum equal to 1."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _iban_span(text: str, start: int, end: int) -> int | None:
    """End of a valid IBAN starting at ``start`` within the regex match, or None.

    The match may run on into a following upper-case word ("... 3000 EUR"); the country's
    length says where the IBAN stops, which must be the end of a group.
    """
    length = IBAN_LENGTHS.get(text[start:start + 2])
    if length is None:
        return None
    seen, pos = 0, start
    while pos < end and seen < length:
        if text[pos] != " ":
            seen += 1
        pos += 1
    if seen != length or (pos < end and text[pos] != " "):
        return None
    return pos if iban_ok(text[start:pos].replace(" ", "")) else None


def _keep_ip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(addr.version == net.version and addr in net for net in _KEEP_NETS)


def _before(text: str, start: int) -> str:
    return text[max(0, start - _CONTEXT):start]


def _email_matches(text: str) -> Iterator[re.Match]:
    """``EMAIL_RE.finditer(text)``, but the regex only runs near each ``@``: a local part is
    at most 64 characters, so a window from 65 before the ``@`` holds every match through it
    (lookbehinds still see the text before a window)."""
    pos, size = 0, len(text)
    while (at := text.find("@", pos)) >= 0:
        hi = min(size, at + 300)
        m = EMAIL_RE.search(text, max(pos, at - 65), hi)
        if m is not None and m.end() >= hi - 1 and hi < size:  # ran into the window's end
            m = EMAIL_RE.search(text, m.start())
        if m is None:
            pos = at + 1
            continue
        yield m
        pos = m.end()


def find_emails(text: str) -> list[Finding]:
    out = []
    for m in _email_matches(text):
        local, domain = m.group().rsplit("@", 1)
        if ".." in local or domain.rsplit(".", 1)[1].lower() in ASSET_EXTENSIONS:
            continue
        out.append(Finding(m.start(), m.end(), "email"))
    return out


DIGIT_RUN_RE = re.compile(rf"[0-9](?:[ ()./\-{_NBSP}]{{0,5}}[0-9])*")
"""Maximal runs of digits linked by at most five separator characters: every phone, card and
IPv4 match has all its digits inside one run, so the precise regexes only run near runs with
enough digits (Python's regex engine is slow to scan a whole document)."""


_SEPARATORS = str.maketrans(dict.fromkeys(f" ()./-{_NBSP}"))


@functools.lru_cache(maxsize=8)
def _digit_runs(text: str) -> tuple[tuple[int, int, int], ...]:
    """(start, end, digits) of each run; cached, as three finders ask for the same text."""
    return tuple((m.start(), m.end(), len(m.group().translate(_SEPARATORS)))
                 for m in DIGIT_RUN_RE.finditer(text))


def _near_runs(rx: re.Pattern, text: str, min_digits: int, lead: int) -> Iterator[re.Match]:
    """``rx.finditer(text)`` restricted to windows around digit runs with ``min_digits``:
    from ``lead`` characters before a run (a ``+`` or ``(``) to 4 after it, for lookaheads.

    A match's digits all lie in one run, so a match of this run starts before the run's end
    and ends at most one character (a ``)``) after it; one starting later belongs to the next
    run (its truncated window would distort it) and is left to that run's window.
    """
    size, last = len(text), 0
    for start, end, digits in _digit_runs(text):
        if digits < min_digits:
            continue
        for m in rx.finditer(text, max(last, start - lead), min(size, end + 4)):
            if m.start() >= end:
                break
            yield m
            last = m.end()


def find_ips(text: str, redact_private: bool = False) -> list[Finding]:
    out = []
    for m in _near_runs(IPV4_RE, text, 4, 0):
        octets = m.groups()
        if any(int(o) > 255 or (len(o) > 1 and o[0] == "0") for o in octets):
            continue
        if VERSION_CUE.search(_before(text, m.start())):
            continue
        if redact_private or not _keep_ip(ipaddress.IPv4Address(m.group())):
            out.append(Finding(m.start(), m.end(), "ip"))
    if "::" not in text and not IPV6_HINT_RE.search(text):
        return out
    for m in IPV6_RE.finditer(text):
        s = m.group()
        if not any(ch.isdigit() for ch in s):
            continue
        try:
            addr = ipaddress.IPv6Address(s)
        except ValueError:
            continue
        if redact_private or not _keep_ip(addr):
            out.append(Finding(m.start(), m.end(), "ip"))
    return out


def find_cards(text: str) -> list[Finding]:
    return [Finding(m.start(), m.end(), "credit_card") for m in _near_runs(CARD_RE, text, 13, 0)
            if is_card_number(re.sub(r"\D", "", m.group()))]


def find_ibans(text: str) -> list[Finding]:
    out = []
    for m in IBAN_RE.finditer(text):
        end = _iban_span(text, m.start(), m.end())
        if end is not None:
            out.append(Finding(m.start(), end, "iban"))
    return out


def is_phone(run: str, before: str = "") -> bool:
    """Whether a digit-group run (``PHONE_RE`` match) is a phone number; ``before`` is the
    text just in front of it, for cues."""
    if VERSION_CUE.search(before) or ISBN_CUE.search(before):
        return False
    if DATE_RE.search(run) or ZIP4_RE.fullmatch(run):
        return False
    groups = re.findall(r"\d+", run)
    digits = "".join(groups)
    if run.startswith("+"):
        trunk = 1 if "(0)" in run else 0
        return 8 <= len(digits) - trunk <= 15
    if PHONE_CUE.search(before):
        return 7 <= len(digits) <= 15
    if len(groups) < 2:
        return False  # plain long numbers need a "+" or a cue
    if digits.startswith("00"):  # international prefix, then a country code (no 0)
        return len(groups[0]) in (2, 4) and digits[2] != "0" and 10 <= len(digits) <= 17
    if NANP_RE.fullmatch(run):
        return True
    trunk = run.startswith(("0", "(0"))
    return trunk and all(len(g) >= 2 for g in groups) and 9 <= len(digits) <= 12


def find_phones(text: str) -> list[Finding]:
    return [Finding(m.start(), m.end(), "phone") for m in _near_runs(PHONE_RE, text, 7, 3)
            if is_phone(m.group(), _before(text, m.start()))]


def find_pii(text: str, kinds: Sequence[str] = KINDS,
             redact_private_ips: bool = False) -> list[Finding]:
    """Non-overlapping findings in text order; overlaps go to the kind earlier in PRIORITY."""
    found: list[Finding] = []
    starts: list[int] = []  # the spans taken so far, sorted and disjoint
    ends: list[int] = []
    finders = {"email": find_emails, "iban": find_ibans, "credit_card": find_cards,
               "ip": lambda t: find_ips(t, redact_private_ips), "phone": find_phones}
    for kind in PRIORITY:
        if kind not in kinds:
            continue
        # longest first, so an IPv6 address wins over the IPv4 address embedded in it
        for f in sorted(finders[kind](text), key=lambda f: (f.start - f.end, f.start)):
            i = bisect.bisect_right(starts, f.start)
            if (i and ends[i - 1] > f.start) or (i < len(starts) and starts[i] < f.end):
                continue
            starts.insert(i, f.start)
            ends.insert(i, f.end)
            found.append(f)
    return sorted(found)


def redact(text: str, cfg: PiiConfig | None = None,
           kinds: Sequence[str] | None = None) -> tuple[str, dict[str, int]]:
    """(redacted text, count per kind) of one text; default config: every kind. ``kinds``
    narrows ``cfg.kinds`` to those worth looking for (their pre-filter matched)."""
    cfg = cfg if cfg is not None else PiiConfig()
    counts = dict.fromkeys(KINDS, 0)
    parts, pos = [], 0
    for f in find_pii(text, cfg.kinds if kinds is None else kinds, cfg.redact_private_ips):
        parts.append(text[pos:f.start])
        parts.append(cfg.placeholder_for(f.kind))
        counts[f.kind] += 1
        pos = f.end
    if pos == 0:
        return text, counts
    parts.append(text[pos:])
    return "".join(parts), counts


def residual_findings(redacted: str, cfg: PiiConfig) -> list[Finding]:
    """What the detectors still find in a redacted text, placeholders masked by line breaks.

    Detection is defined on the original text; a placeholder must not act as a phone cue
    (``<PHONE>`` contains "phone") nor join its neighbours, and a line break does neither.
    """
    for kind in cfg.kinds:
        redacted = redacted.replace(cfg.placeholder_for(kind), "\n")
    return find_pii(redacted, cfg.kinds, cfg.redact_private_ips)


# --- the stage -----------------------------------------------------------------------------

def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, values) if i >= 0 else table.append_column(name, values)


def redact_column(texts: pa.Array | pa.ChunkedArray, cfg: PiiConfig,
                  ) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """Redacted copy of a string column and per-kind counts (int32 per row)."""
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    counts = {k: np.zeros(len(arr), dtype=np.int32) for k in KINDS}
    rows = np.flatnonzero(candidate_mask(arr, cfg.kinds))
    if not len(rows):
        return arr, counts
    subset = arr.take(pa.array(rows))
    # which kinds each candidate may hold: the pre-filters again, on the candidates only
    may_hold = np.column_stack([candidate_mask(subset, [k]) for k in cfg.kinds])
    changed = np.zeros(len(arr), dtype=bool)
    replacements: list[str] = []
    for row, text, flags in zip(rows.tolist(), subset.to_pylist(), may_hold, strict=True):
        new, found = redact(text, cfg, [k for k, f in zip(cfg.kinds, flags, strict=True) if f])
        if not any(found.values()):
            continue
        changed[row] = True
        replacements.append(new)
        for kind, n in found.items():
            counts[kind][row] = n
    if replacements:
        arr = pc.replace_with_mask(arr, pa.array(changed), pa.array(replacements, arr.type))
    return arr, counts


def _detail(counts: dict[str, np.ndarray], rows: np.ndarray) -> pa.Array:
    """``email 2, phone 1`` per row."""
    out = []
    for r in rows.tolist():
        out.append(", ".join(f"{k} {int(counts[k][r])}" for k in KINDS if counts[k][r]))
    return pa.array(out, pa.string())


def redact_table(table: pa.Table, cfg: PiiConfig) -> StageOutput:
    """Redact ``cfg.columns`` of a documents table; add ``pii_counts`` and ``pii_redactions``."""
    n = table.num_rows
    totals = {k: np.zeros(n, dtype=np.int32) for k in KINDS}
    for column in cfg.columns:
        if column not in table.column_names:
            raise ValueError(f"no column {column!r} to redact (columns: "
                             f"{', '.join(table.column_names)})")
        values, counts = redact_column(table.column(column), cfg)
        table = _set(table, column, values)
        for k in KINDS:
            totals[k] += counts[k]
    struct = pa.StructArray.from_arrays([pa.array(totals[k]) for k in KINDS],
                                        fields=list(COUNTS_TYPE))
    total = np.sum([totals[k] for k in KINDS], axis=0, dtype=np.int32)
    table = _set(_set(table, "pii_counts", struct), "pii_redactions", pa.array(total, pa.int32()))
    if not cfg.drop_documents_with_pii:
        return StageOutput(kept=table, rejected=_empty_rejected(table), rows_in=n)
    drop = total > 0
    rows = np.flatnonzero(drop)
    rejected = table.filter(pa.array(drop))
    rejected = (rejected
                .append_column("reject_stage", pa.repeat(pa.scalar(STAGE_NAME), len(rows)))
                .append_column("reject_reason", pa.repeat(pa.scalar(CONTAINS_PII), len(rows)))
                .append_column("reject_detail", _detail(totals, rows)))
    return StageOutput(kept=table.filter(pa.array(~drop)), rejected=rejected, rows_in=n)


def _empty_rejected(table: pa.Table) -> pa.Table:
    empty = table.slice(0, 0)
    for name in ("reject_stage", "reject_reason", "reject_detail"):
        empty = empty.append_column(name, pa.array([], pa.string()))
    return empty


def redact_unit(unit: WorkUnit, cfg: PiiConfig) -> StageOutput:
    """One upstream documents shard in, the same shard redacted out."""
    (path,) = unit.inputs
    return redact_table(read_shard(path), cfg)


PII = Stage(name=STAGE_NAME, version="1", output_kind=DOCUMENTS, process=redact_unit)


# --- reports and checks --------------------------------------------------------------------

def pii_report(stage_dir: Path) -> dict[str, int]:
    """Redactions per kind over a pii stage's kept and rejected shards, plus
    ``documents_with_pii``; read from the ``pii_counts`` column only."""
    from curate.decontaminate import read_columns
    from schemas.dataset import shard_paths

    totals = dict.fromkeys((*KINDS, "documents_with_pii"), 0)
    for path in [*shard_paths(stage_dir), *shard_paths(stage_dir, rejected=True)]:
        table = read_columns(path, ["pii_counts", "pii_redactions"])
        if table is None:
            raise ValueError(f"{path} has no pii_counts: not the output of the pii stage")
        counts = table.column("pii_counts").combine_chunks()
        for k in KINDS:
            totals[k] += int(pc.sum(counts.field(k)).as_py() or 0)
        totals["documents_with_pii"] += int(pc.sum(pc.greater(
            table.column("pii_redactions"), 0)).as_py() or 0)
    return totals


def residual_pii(stage_dir: Path, cfg: PiiConfig) -> dict[str, int]:
    """Findings of ``cfg.kinds`` still present in the kept shards (shard name -> count).

    The check after a run: redaction must leave nothing its own detector would find.
    """
    from schemas.dataset import shard_paths

    left: dict[str, int] = {}
    for path in shard_paths(stage_dir):
        table = read_shard(path, columns=list(cfg.columns))
        found = 0
        for column in cfg.columns:
            texts = table.column(column).combine_chunks()
            rows = np.flatnonzero(candidate_mask(texts, cfg.kinds))
            for text in texts.take(pa.array(rows)).to_pylist():
                found += len(residual_findings(text, cfg))
        if found:
            left[path.name] = found
    return left
