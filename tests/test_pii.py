"""PII redaction: tricky cases both ways, the vectorised pre-filter never hides PII, counts per
document, placeholders, dropping, the stage's conservation and the command."""

from __future__ import annotations

import pyarrow as pa
import pytest
from click.testing import CliRunner

from curate import pii
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.pii import (
    KINDS,
    PII,
    PiiConfig,
    candidate_mask,
    iban_ok,
    is_card_number,
    luhn_ok,
    pii_report,
    redact,
    redact_table,
    residual_pii,
)
from curate.pii_decontam_cli import redact as redact_command
from curate.runner import plan_shards, run_stage
from schemas import DOCUMENTS, REJECTED, read_shard, validate_table, verify_stage

from .conftest import write_jsonl

# (text, the PII in it, its kind): the PII must be replaced by its placeholder, nothing else
POSITIVE = [
    ("write to john.doe@example.com today", "john.doe@example.com", "email"),
    ("tag me: jane+newsletter@mail.example.co.uk.", "jane+newsletter@mail.example.co.uk",
     "email"),
    ("ops: first.last_name-1@sub.dept.company.org, thanks",
     "first.last_name-1@sub.dept.company.org", "email"),
    ("mailto:Info@Firma.DE", "Info@Firma.DE", "email"),
    ("écrivez à josé.müller@exämple.de", "josé.müller@exämple.de", "email"),
    ("Visa 4111 1111 1111 1111 expires", "4111 1111 1111 1111", "credit_card"),
    ("card 4111-1111-1111-1111.", "4111-1111-1111-1111", "credit_card"),
    ("number 4012888888881881 ok", "4012888888881881", "credit_card"),
    ("MC 5555 5555 5555 4444", "5555 5555 5555 4444", "credit_card"),
    ("MC 2-series 2223003122003222", "2223003122003222", "credit_card"),
    ("Amex 3782 822463 10005", "3782 822463 10005", "credit_card"),
    ("Discover 6011111111111117", "6011111111111117", "credit_card"),
    ("JCB 3530 1113 3330 0000", "3530 1113 3330 0000", "credit_card"),
    ("Diners 30569309025904", "30569309025904", "credit_card"),
    ("IBAN DE89 3704 0044 0532 0130 00 EUR", "DE89 3704 0044 0532 0130 00", "iban"),
    ("pay DE89370400440532013000.", "DE89370400440532013000", "iban"),
    ("UK GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32", "iban"),
    ("FR FR14 2004 1010 0505 0001 3M02 606", "FR14 2004 1010 0505 0001 3M02 606", "iban"),
    ("NL NL91ABNA0417164300", "NL91ABNA0417164300", "iban"),
    ("BE BE68 5390 0754 7034", "BE68 5390 0754 7034", "iban"),
    ("CH CH93 0076 2011 6238 5295 7", "CH93 0076 2011 6238 5295 7", "iban"),
    ("IT IT60 X054 2811 1010 0000 0123 456", "IT60 X054 2811 1010 0000 0123 456", "iban"),
    ("ES ES91 2100 0418 4502 0005 1332", "ES91 2100 0418 4502 0005 1332", "iban"),
    ("NO NO93 8601 1117 947", "NO93 8601 1117 947", "iban"),
    ("PL PL61 1090 1014 0000 0712 1981 2874", "PL61 1090 1014 0000 0712 1981 2874", "iban"),
    ("server at 8.8.4.4 responded", "8.8.4.4", "ip"),
    ("from 203.0.113.195:8080", "203.0.113.195", "ip"),
    ("route 198.51.100.0/24", "198.51.100.0", "ip"),
    ("the host 2001:db8::8a2e:370:7334 is up", "2001:db8::8a2e:370:7334", "ip"),
    ("v6 2a00:1450:4001:81c::200e.", "2a00:1450:4001:81c::200e", "ip"),
    ("mapped ::ffff:203.0.113.5 here", "::ffff:203.0.113.5", "ip"),
    ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
     "ip"),
    ("call +1 (415) 555-2671 now", "+1 (415) 555-2671", "phone"),
    ("UK +44 20 7946 0958", "+44 20 7946 0958", "phone"),
    ("UK +44 (0)20 7946 0958.", "+44 (0)20 7946 0958", "phone"),
    ("E.164 +14155552671", "+14155552671", "phone"),
    ("DE +49 30 12345678", "+49 30 12345678", "phone"),
    ("US (415) 555-2671", "(415) 555-2671", "phone"),
    ("US 415-555-2671", "415-555-2671", "phone"),
    ("US 415.555.2671", "415.555.2671", "phone"),
    ("toll free 1-800-555-0199", "1-800-555-0199", "phone"),
    ("FR 01 23 45 67 89", "01 23 45 67 89", "phone"),
    ("DE 030 12345678", "030 12345678", "phone"),
    ("DE 030/12345678", "030/12345678", "phone"),
    ("UK 020 7946 0958", "020 7946 0958", "phone"),
    ("NL 06-12345678", "06-12345678", "phone"),
    ("intl 0044 20 7946 0958", "0044 20 7946 0958", "phone"),
    ("Tel: 5552671", "5552671", "phone"),
    ("phone 4155552671", "4155552671", "phone"),
    ("fax: 030 1234567", "030 1234567", "phone"),
    ("tél. 01 23 45 67 89", "01 23 45 67 89", "phone"),
]

# left alone by every detector
NEGATIVE = [
    "logo@2x.png and icon@3x.jpg",            # retina asset names, not emails
    "a..b@example.com",                         # invalid local part
    "x@localhost and user@host",                # no TLD
    "4111 1111 1111 1112",                      # Luhn fails
    "1234567812345670",                         # Luhn passes, no card network
    "0000 0000 0000 0000",                      # Luhn passes, no card network
    "4111 1111-1111 1111",                      # mixed separators
    "DE89 3704 0044 0532 0130 01",              # IBAN check digits fail
    "DE89 3704 0044 0532 0130",                 # too short for DE
    "XX89 3704 0044 0532 0130 00",              # no such country
    "256.1.1.1 and 1.2.3.999",                  # octets > 255
    "01.02.03.04",                              # leading zeros
    "version 1.2.3.4 and v1.2.3.4 and build 10.0.0.1",
    "1.2.3.4.5",                                # a longer dotted number
    "10.0.19041.1 and 120.0.6099.109 and 1.2.3",
    "std::vector<int> and dead::beef and Foo::Bar",
    "at 12:30:45 or 10:30",                     # times
    "MAC 00:1A:2B:3C:4D:5E",
    "local 127.0.0.1 and 192.168.1.1 and 10.0.0.2 and ::1 and fe80::1",  # private: kept
    "on 2024-11-24, 24/11/2024, 24.11.2024, 11/24/24, 05.11.2024 14:30",
    "ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2 and 0-306-40615-2",
    "ISBN-13: 9783161484100",
    "ZIP 90210, 02134-1234 and 10115 Berlin",
    "price $1,234.56, €1.234,56, 1 234 567, 12 345 678, 1,000,000 and USD 250 300 4000.00",
    "years 2019 2020 2021, 1999-2004, 2019, 2020",
    "plain 12345678901 and 4155552671 and 20241124",
    "a ratio of 3/4 and 1/2 and page 12-15",
    "+25% and +3 points",
]


@pytest.mark.parametrize(("text", "found", "kind"), POSITIVE)
def test_pii_is_redacted_with_its_placeholder(text, found, kind):
    out, counts = redact(text)
    assert out == text.replace(found, f"<{kind.upper()}>")
    assert counts[kind] == 1 and sum(counts.values()) == 1
    assert candidate_mask(pa.array([text]), KINDS)[0], "the pre-filter must see it"
    assert candidate_mask(pa.array([text]), [kind])[0], "its own kind's pre-filter must see it"


@pytest.mark.parametrize("text", NEGATIVE)
def test_lookalikes_are_left_alone(text):
    out, counts = redact(text)
    assert out == text and sum(counts.values()) == 0


def test_checksums():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert is_card_number("378282246310005") and not is_card_number("378282246310006")
    assert not is_card_number("4111111111111")  # 13 digits, Luhn fails
    for good in ("GB82WEST12345698765432", "DE89370400440532013000", "NL91ABNA0417164300",
                 "AT611904300234573201", "BE68539007547034", "NO9386011117947"):
        assert iban_ok(good)
        assert not iban_ok(good[:-1] + str((int(good[-1]) + 1) % 10))  # one digit changed
        assert not iban_ok(good + "0")                                  # wrong length
    assert not iban_ok("QQ82WEST12345698765432")


def test_private_ips_are_redacted_when_asked():
    text = "local 127.0.0.1 and 192.168.1.1 and fe80::1"
    assert redact(text)[0] == text
    out, counts = redact(text, PiiConfig(redact_private_ips=True))
    assert out == "local <IP> and <IP> and <IP>" and counts["ip"] == 3


def test_several_kinds_counted_per_document_and_overlaps_resolved():
    text = ("Contact jo@ex.org or bo@ex.org, +44 20 7946 0958, card 4111 1111 1111 1111, "
            "IBAN GB82 WEST 1234 5698 7654 32, host 8.8.8.8 and 2001:db8::1.")
    out, counts = redact(text)
    assert counts == {"email": 2, "phone": 1, "ip": 2, "credit_card": 1, "iban": 1}
    assert out == ("Contact <EMAIL> or <EMAIL>, <PHONE>, card <CREDIT_CARD>, IBAN <IBAN>, "
                   "host <IP> and <IP>.")
    assert redact(out) == (out, dict.fromkeys(KINDS, 0)), "redaction is idempotent"


def test_placeholders_are_no_cues_for_the_check():
    """Detection is defined on the original text: "call" cues only the first number here.
    The check after a run masks placeholders, so "[phone]" does not cue the second."""
    cfg = PiiConfig(placeholder="[{kind}]")
    out, counts = redact("call 020 7946 0958 or 555 2671", cfg)
    assert out == "call [phone] or 555 2671" and counts["phone"] == 1
    assert pii.residual_findings(out, cfg) == []
    assert pii.residual_findings(out + " or 020 7946 0958", cfg) != []


def test_kinds_and_placeholder_are_configurable():
    text = "mail a@b.com or call +1 415 555 2671"
    cfg = PiiConfig(kinds=["phone"], placeholder="[{kind} removed]")
    assert redact(text, cfg)[0] == "mail a@b.com or call [phone removed]"
    assert redact(text, PiiConfig(placeholder="[REDACTED]"))[0] == (
        "mail [REDACTED] or call [REDACTED]")
    assert not candidate_mask(pa.array(["mail a@b.com"]), ["phone"])[0]


def _docs(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table({"id": [f"d{i}" for i in range(n)], "text": texts,
                     "url": pa.nulls(n, pa.string()), "source": ["t"] * n})


def test_table_counts_and_only_candidates_go_through_python(monkeypatch):
    texts = ["no pii here at all", "mail a@b.com and c@d.org", "call 020 7946 0958",
             "version 1.2.3.4 on 2024-11-24", "", "IBAN DE89370400440532013000"]
    calls = []
    real = pii.redact
    monkeypatch.setattr(pii, "redact",
                        lambda t, c=None, k=None: calls.append(t) or real(t, c, k))
    out = redact_table(_docs(texts), PiiConfig())
    assert sorted(calls) == sorted(texts[1:4] + texts[5:]), "PII-free texts skip Python"
    kept = out.kept
    assert out.rows_in == kept.num_rows == 6 and out.rejected.num_rows == 0
    assert kept.column("text").to_pylist() == [
        "no pii here at all", "mail <EMAIL> and <EMAIL>", "call <PHONE>",
        "version 1.2.3.4 on 2024-11-24", "", "IBAN <IBAN>"]
    assert kept.column("pii_redactions").to_pylist() == [0, 2, 1, 0, 0, 1]
    counts = kept.column("pii_counts").to_pylist()
    assert counts[1] == {"email": 2, "phone": 0, "ip": 0, "credit_card": 0, "iban": 0}
    assert counts[5]["iban"] == 1
    validate_table(kept, DOCUMENTS)


def test_drop_documents_with_pii_keeps_them_redacted_in_rejected():
    out = redact_table(_docs(["clean text", "mail a@b.com and call +1 415 555 2671"]),
                       PiiConfig(drop_documents_with_pii=True))
    assert out.kept.column("id").to_pylist() == ["d0"]
    rej = out.rejected
    assert rej.column("reject_reason").to_pylist() == ["contains_pii"]
    assert rej.column("reject_detail").to_pylist() == ["email 1, phone 1"]
    assert rej.column("text").to_pylist() == ["mail <EMAIL> and call <PHONE>"]
    validate_table(rej, REJECTED)


def test_other_columns_and_missing_column():
    table = _docs(["x"]).append_column("title", pa.array(["by a@b.com"]))
    out = redact_table(table, PiiConfig(columns=["text", "title"])).kept
    assert out.column("title").to_pylist() == ["by <EMAIL>"]
    assert out.column("pii_counts").to_pylist()[0]["email"] == 1
    with pytest.raises(ValueError, match="no column 'body'"):
        redact_table(table, PiiConfig(columns=["body"]))


def _stage(tmp_path) -> tuple:
    records = [{"id": f"a{i}", "text": f"Document {i}: nothing personal, of 2024-11-{i + 1:02d}."}
               for i in range(20)]
    records += [{"id": "p1", "text": "Reach me at me@example.com or +49 30 12345678."},
                {"id": "p2", "text": "Card 4111 1111 1111 1111; IBAN DE89 3704 0044 0532 0130 00"}]
    write_jsonl(tmp_path / "raw" / "a.jsonl", records[:11])
    write_jsonl(tmp_path / "raw" / "b.jsonl", records[11:])
    docs = tmp_path / "docs"
    assert run_stage(INGEST, plan_ingest(tmp_path / "raw"), docs, IngestConfig(),
                     progress=False).ok
    return docs, records


@pytest.mark.parametrize("drop", [False, True])
def test_stage_conserves_rows_and_reports_counts(tmp_path, drop):
    docs, records = _stage(tmp_path)
    out = tmp_path / "pii"
    cfg = PiiConfig(drop_documents_with_pii=drop)
    report = run_stage(PII, plan_shards(docs), out, cfg, progress=False)
    assert report.ok and report.rows_in == len(records)
    assert report.rows_kept + report.rows_rejected == report.rows_in
    assert report.rows_rejected == (2 if drop else 0)
    assert verify_stage(out).ok
    totals = pii_report(out)
    assert totals == {"email": 1, "phone": 1, "ip": 0, "credit_card": 1, "iban": 1,
                      "documents_with_pii": 2}
    assert residual_pii(out, cfg) == {}
    texts = {r["id"]: r["text"] for p in sorted(out.glob("**/*.arrow"))
             for r in read_shard(p).select(["id", "text"]).to_pylist()}
    assert texts["p1"] == "Reach me at <EMAIL> or <PHONE>."
    assert texts["p2"] == "Card <CREDIT_CARD>; IBAN <IBAN>"
    assert texts["a3"] == records[3]["text"], "dates are not phone numbers"
    again = run_stage(PII, plan_shards(docs), out, cfg, progress=False)
    assert again.skipped == again.units, "an unchanged re-run skips every shard"


def test_redact_command(tmp_path):
    docs, _ = _stage(tmp_path)
    result = CliRunner().invoke(redact_command, [
        "--input", str(docs), "--output", str(tmp_path / "pii"), "--workers", "1", "--quiet",
        "--set", "placeholder='[{KIND}]'"])
    assert result.exit_code == 0, result.output
    assert "rows     in 22  kept 22  rejected 0" in result.output
    assert "2 documents with PII" in result.output and "iban 1" in result.output
    assert "no PII left" in result.output
    texts = [t for p in sorted((tmp_path / "pii").glob("*.arrow"))
             for t in read_shard(p).column("text").to_pylist()]
    assert "Reach me at [EMAIL] or [PHONE]." in texts
    bad = CliRunner().invoke(redact_command, ["--input", str(docs), "--output",
                                              str(tmp_path / "x"), "--set", "kinds=[ssn]"])
    assert bad.exit_code != 0 and "kinds" in bad.output


def _whole_text(rx, text, keep) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in rx.finditer(text) if keep(m)]


def test_windowed_search_equals_a_whole_text_scan_and_prefilters_see_everything():
    """The finders only run their regexes near ``@`` or digit runs; on random strings of
    tricky pieces they must find exactly what a scan of the whole text finds, and the
    vectorised pre-filter must flag every text with a finding."""
    import random
    import re

    rng = random.Random(0)
    pieces = ["0", "1", "4", "7", "44", "020", "7946", "0958", "1111", " ", " ", "-", ".", "/",
              "(", ")", "+", "tel ", "x", "ab", ":", ",", "@", "a.b", "co", "\u00a0", "ISBN ",
              "version ", "4111 1111 1111 1111", "+44 20 7946 0958", "8.8.8.8",
              "5555555555554444", "(415) 555-2671", "j@x.org", "1.2.3"]
    phone = lambda t: lambda m: pii.is_phone(m.group(), pii._before(t, m.start()))  # noqa: E731
    card = lambda m: pii.is_card_number(re.sub(r"\D", "", m.group()))  # noqa: E731
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))) for _ in range(3000)]
    found_any = []
    for t in texts:
        assert [(f.start, f.end) for f in pii.find_phones(t)] == _whole_text(
            pii.PHONE_RE, t, phone(t))
        assert [(f.start, f.end) for f in pii.find_cards(t)] == _whole_text(pii.CARD_RE, t, card)
        assert [m.span() for m in pii._email_matches(t)] == _whole_text(
            pii.EMAIL_RE, t, lambda m: True)
        found_any.append(bool(pii.find_pii(t)))
    mask = candidate_mask(pa.array(texts), KINDS)
    assert sum(found_any) > 500 and all(mask[found_any])
