"""Word splitting for the heuristic signals, as datatrove's filters split words.

datatrove tokenizes English with a blank spaCy pipeline (``spacy.blank("en")``), so the Gopher
and FineWeb thresholds were tuned on spaCy's tokens: clitics split (``do`` ``n't``), hyphens
between letters are their own token, punctuation is peeled off a word one mark at a time, URLs
and abbreviations (``U.S.``, ``Mr.``) stay whole. This module re-implements that algorithm
(prefix / suffix / infix search, special cases, URL match) with the same rules, written
after spaCy's English tokenizer (MIT licence), without importing spaCy.

Tokens never cross whitespace, so a text is cut into whitespace-free *chunks* first and only
the distinct chunks are tokenized (a page has few distinct chunks, a corpus repeats them), with
a per-process cache. Chunks made only of letters or only of digits are one token unless they are
special cases, so most chunks never reach the regexes.

Beyond English: letters of every script count as letters (Unicode classes, not spaCy's list of
scripts), and in scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer,
Myanmar, Tibetan) every character is a word of its own, which is what the dedup normaliser
does too. datatrove segments Chinese with jieba, Japanese with SudachiPy and Thai with
pythainlp there, so word counts for those languages differ from its counts.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

import regex

# --- character classes (after spacy.lang.char_classes) ----------------------------------------

_ELLIPSES = [r"\.\.+", "\u2026"]
_PUNCT_LIST = ["\u2026", "\u2026\u2026", ",", ":", ";", r"\!", r"\?", "\xbf", "\u061f", "\xa1",
               r"\(", r"\)", r"\[", r"\]", r"\{", r"\}", "<", ">", "_", "#", r"\*", "&",
               "\u3002", "\uff1f", "\uff01", "\uff0c", "\u3001", "\uff1b", "\uff1a", "\uff5e",
               "\xb7", "\u0964", "\u060c", "\u06d4", "\u061b", "\u066a"]
_QUOTES = [r"\'", '"', "\u201d", "\u201c", "`", "\u2018", "\xb4", "\u2019", "\u201a", ",",
           "\u201e", "\xbb", "\xab", "\u300c", "\u300d", "\u300e", "\u300f", "\uff08", "\uff09",
           "\u3014", "\u3015", "\u3010", "\u3011", "\u300a", "\u300b", "\u3008", "\u3009",
           "\u2329", "\u232a", "\u27e6", "\u27e7"]
_CURRENCY = [r"\$", "\xa3", "\u20ac", "\xa5", "\u0e3f", r"US\$", r"C\$", r"A\$", "\u20bd",
             "\ufdfc", *(chr(c) for c in range(0x20A0, 0x20C0))]
_ICONS = [r"[\p{So}]"]
_HYPHENS = "-|\u2013|\u2014|--|---|\u2014\u2014|~"
_CONCAT_QUOTES = "".join(q.replace("\\", "") for q in _QUOTES)
_PUNCT = "|".join(_PUNCT_LIST)
_UNITS = ("km|km²|km³|m|m²|m³|dm|dm²|dm³|cm|cm²|cm³|mm|mm²|mm³|ha|µm|nm|yd|in|ft|kg|g|mg|µg|t|"
          "lb|oz|m/s|km/h|kmh|mph|hPa|Pa|mbar|mb|MB|kb|KB|gb|GB|tb|TB|T|G|M|K|%|км|км²|км³|м|"
          "м²|м³|дм|дм²|дм³|см|см²|см³|мм|мм²|мм³|нм|кг|г|мг|м/с|км/ч|кПа|Па|мбар|Кб|КБ|кб|Мб|"
          "МБ|мб|Гб|ГБ|гб|Тб|ТБ|тб")
_ALPHA, _LOWER, _UPPER = r"\p{L}", r"\p{Ll}", r"\p{Lu}"
_Q = r"\'" + _CONCAT_QUOTES

_PREFIXES = ["§", "%", "=", "\u2014", "\u2013", r"\+(?![0-9])", *_PUNCT_LIST, *_ELLIPSES,
             *_QUOTES, *_CURRENCY, *_ICONS]
_SUFFIXES = [*_PUNCT_LIST, *_ELLIPSES, *_QUOTES, *_ICONS, "'s", "'S", "\u2019s", "\u2019S",
             "\u2014", "\u2013", r"(?<=[0-9])\+", r"(?<=°[FfCcKk])\.",
             r"(?<=[0-9])(?:{})".format("|".join(_CURRENCY)), rf"(?<=[0-9])(?:{_UNITS})",
             rf"(?<=[0-9{_LOWER}%²\-\+{_PUNCT}(?:{_Q})])\.", rf"(?<=[{_UPPER}][{_UPPER}])\."]
_INFIXES = [*_ELLIPSES, *_ICONS, r"(?<=[0-9])[+\-\*^](?=[0-9-])",
            rf"(?<=[{_LOWER}{_Q}])\.(?=[{_UPPER}{_Q}])", rf"(?<=[{_ALPHA}]),(?=[{_ALPHA}])",
            rf"(?<=[{_ALPHA}0-9])(?:{_HYPHENS})(?=[{_ALPHA}])",
            rf"(?<=[{_ALPHA}0-9])[:<>=/](?=[{_ALPHA}])"]

_PREFIX_SEARCH = regex.compile("|".join("^" + p for p in _PREFIXES)).search
_SUFFIX_SEARCH = regex.compile("|".join(p + "$" for p in _SUFFIXES)).search
_INFIX_FINDITER = regex.compile("|".join(_INFIXES)).finditer
_URL_MATCH = regex.compile(
    r"^(?:(?:[\w\+\-\.]{2,})://)?(?:\S+(?::\S*)?@)?(?:"
    r"(?!(?:10|127)(?:\.\d{1,3}){3})(?!(?:169\.254|192\.168)(?:\.\d{1,3}){2})"
    r"(?!172\.(?:1[6-9]|2\d|3[0-1])(?:\.\d{1,3}){2})"
    r"(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}"
    r"(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))"
    r"|(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?"
    r"[A-Za-z0-9\u00a1-\uffff]\.)+(?:[\p{Ll}]{2,63}))(?::\d{2,5})?(?:[/?#]\S*)?$").match

_URL_MAX = 2000
"""Longer chunks are not tried as URLs: the URL pattern backtracks quadratically on long
strings full of colons (spaCy would try; such a chunk is then split at its infixes)."""
_ASCII_DIGIT = regex.compile("[0-9]").search
_UNSPACED = (r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}"
             "\u30fc")
_UNSPACED_SPLIT = regex.compile(rf"[{_UNSPACED}]|[^{_UNSPACED}]+").findall
_HAS_UNSPACED = regex.compile(rf"[{_UNSPACED}]").search

# --- special cases (after spacy.lang.en.tokenizer_exceptions and the base exceptions) ----------

_EMOTICON_TEXT = r"""
:) :-) :)) :-)) :))) :-))) (: (-: =) (= :] :-] [: [-: [= =] :o) (o: :} :-} 8) 8-) (-8 ;) ;-) (;
(-; :( :-( :(( :-(( :((( :-((( ): )-: =( >:( :') :'-) :'( :'-( :/ :-/ =/ =| :| :-| ]= =[ :1 :P
:-P :p :-p :O :-O :o :-o :0 :-0 :() >:o :* :-* :3 :-3 =3 :> :-> :X :-X :x :-x :D :-D ;D ;-D =D
xD XD xDD XDD 8D 8-D ^_^ ^__^ ^___^ >.< >.> <.< ._. ;_; -_- -__- v.v V.V v_v V_V o_o o_O O_o O_O
0_o o_0 0_0 o.O O.o O.O o.o 0.0 o.0 0.o @_@ <3 <33 <333 </3 (^_^) (-_-) (._.) (>_<) (*_*) (¬_¬)
ಠ_ಠ ಠ︵ಠ (ಠ_ಠ) ¯\(ツ)/¯ (╯°□°）╯︵┻━┻ ><(((*>
"""
_EMOTICONS = tuple(_EMOTICON_TEXT.split())
_WHOLE = ["'", '\\")', "<space>", "''", "C++", "\\t", "\\n", "\u2014",
          *(f"{c}." for c in "abcdefghijklmnopqrstuvwxyzäöü"),
          "'d", "a.m.", "Adm.", "Bros.", "co.", "Co.", "Corp.", "D.C.", "Dr.", "e.g.", "E.g.",
          "E.G.", "Gen.", "Gov.", "i.e.", "I.e.", "I.E.", "Inc.", "Jr.", "Ltd.", "Md.", "Messrs.",
          "Mo.", "Mont.", "Mr.", "Mrs.", "Ms.", "p.m.", "Ph.D.", "Prof.", "Rep.", "Rev.", "Sen.",
          "St.", "vs.", "v.s.", "Mt.", "Ak.", "Ala.", "Apr.", "Ariz.", "Ark.", "Aug.", "Calif.",
          "Colo.", "Conn.", "Dec.", "Del.", "Feb.", "Fla.", "Ga.", "Ia.", "Id.", "Ill.", "Ind.",
          "Jan.", "Jul.", "Jun.", "Kan.", "Kans.", "Ky.", "La.", "Mar.", "Mass.", "Mich.",
          "Minn.", "Miss.", "N.C.", "N.D.", "N.H.", "N.J.", "N.M.", "N.Y.", "Neb.", "Nebr.",
          "Nev.", "Nov.", "Oct.", "Okla.", "Ore.", "Pa.", "S.C.", "Sep.", "Sept.", "Tenn.", "Va.",
          "Wash.", "Wis.", "'Cause", "'cause", "'cos", "'Cos", "'coz", "'Coz", "'cuz", "'Cuz",
          "'bout", "ma'am", "Ma'am", "o'clock", "O'clock", "lovin'", "Lovin'", "lovin", "Lovin",
          "havin'", "Havin'", "havin", "Havin", "doin'", "Doin'", "doin", "Doin", "goin'",
          "Goin'", "goin", "Goin", "'em", "em", "'ll", "ll", "'nuff", "nuff", "'re", "'S",
          "\u2018S", "\u2018s", "and/or", "w/o", "'s",
          *_EMOTICONS]
_SPLIT = {
    "y'all": ("y'", "all"), "yall": ("y", "all"), "how'd'y": ("how", "'d", "'y"),
    "How'd'y": ("How", "'d", "'y"), "not've": ("not", "'ve"), "notve": ("not", "ve"),
    "Not've": ("Not", "'ve"), "Notve": ("Not", "ve"), "cannot": ("can", "not"),
    "Cannot": ("Can", "not"), "gonna": ("gon", "na"), "Gonna": ("Gon", "na"),
    "gotta": ("got", "ta"), "Gotta": ("Got", "ta"), "let's": ("let", "'s"),
    "Let's": ("Let", "'s"), "c'mon": ("c'm", "on"), "C'mon": ("C'm", "on"),
    **{f"°{u}.": ("°", u, ".") for u in "cfkCFK"},
}
_EXCLUDE = {"Ill", "ill", "Its", "its", "Hell", "hell", "Shell", "shell", "Shed", "shed", "were",
            "Were", "Well", "well", "Whore", "whore"}


def _english_special_cases() -> dict[str, tuple[str, ...]]:
    """Chunk -> tokens for the English exceptions (contractions, abbreviations, emoticons)."""
    exc: dict[str, tuple[str, ...]] = {w: (w,) for w in _WHOLE}
    exc.update(_SPLIT)

    def add(base: str, *clitics: str) -> None:
        for orth in (base, base.title()):
            exc[orth + "".join(clitics)] = (orth, *clitics)
            bare = tuple(c.replace("'", "") for c in clitics)
            exc[orth + "".join(bare)] = (orth, *bare)

    add("i", "'m")
    add("i", "'m", "a")
    for pron in ("i", "you", "he", "she", "it", "we", "they"):
        for clitics in (("'ll",), ("'ll", "'ve"), ("'d",), ("'d", "'ve")):
            add(pron, *clitics)
    for pron in ("i", "you", "we", "they"):
        add(pron, "'ve")
    for pron in ("you", "we", "they"):
        add(pron, "'re")
    for pron in ("he", "she", "it"):
        add(pron, "'s")
    for word, number in (("who", 0), ("what", 0), ("when", 0), ("where", 0), ("why", 0),
                         ("how", 0), ("there", 0), ("that", 1), ("this", 1), ("these", 2),
                         ("those", 2)):
        if number != 2:
            add(word, "'s")
        for clitics in (("'ll",), ("'ll", "'ve"), ("'d",), ("'d", "'ve")):
            add(word, *clitics)
        if number != 1:
            add(word, "'re")
            add(word, "'ve")
    for verb in ("ca", "could", "do", "does", "did", "had", "may", "might", "must", "need",
                 "ought", "sha", "should", "wo", "would"):
        add(verb, "n't")
        add(verb, "n't", "'ve")
    for verb in ("could", "might", "must", "should", "would"):
        add(verb, "'ve")
    for verb in ("ai", "are", "is", "was", "were", "have", "has", "dare"):
        add(verb, "n't")
    for word in ("doin", "goin", "nothin", "nuthin", "ol", "somethin"):
        for orth in (word, word.title()):
            exc[orth] = (orth,)
            exc[orth + "'"] = (orth + "'",)
    for hour in range(1, 13):
        for period in ("a.m.", "am", "p.m.", "pm"):
            exc[f"{hour}{period}"] = (str(hour), period)
    for word in _EXCLUDE:
        exc.pop(word, None)
    curly = {k.replace("'", "\u2019"): tuple(t.replace("'", "\u2019") for t in v)
             for k, v in exc.items() if "'" in k}
    exc.update(curly)
    return exc


SPECIAL_CASES: dict[str, tuple[str, ...]] = _english_special_cases()


_SINGLE_SUFFIX = frozenset(",;:!?()[]{}<>_#*&\"\u201d\u201c`\u2018\xb4\u2019'\u201a\u201e\xbb\xab"
                           "\u3002\uff1f\uff01\uff0c\u3001\uff1b\uff1a\uff5e\xb7\u0964\u060c\u06d4"
                           "\u061b\u066a\xbf\u061f\xa1\u2014\u2013")
"""Marks that end no multi-character suffix: when a chunk ends with one, that mark is the
suffix, so the search can be skipped."""


def _suffix_len(string: str) -> int:
    """Length of the suffix spaCy would split off (0: none).

    The search is skipped when the last character settles it, and otherwise started near the
    end: every suffix is short except a run of dots, which is then searched for in the whole
    string (lookbehinds see the whole string either way)."""
    last = string[-1]
    if last in _SINGLE_SUFFIX:
        return 1
    if last.isalnum() and not _ASCII_DIGIT(string) and string[-2:-1] not in "'\u2019":
        return 0
    pos = max(0, len(string) - 12)
    match = _SUFFIX_SEARCH(string, pos)
    if match is not None and pos and match.start() == pos:
        match = _SUFFIX_SEARCH(string)
    return match.end() - match.start() if match is not None else 0


def _has_unspaced(chunk: str) -> bool:
    return max(chunk) >= "\u0e00" and _HAS_UNSPACED(chunk) is not None


def _split_affixes(string: str, specials: bool = True) -> tuple[list[str], str, list[str]]:
    """Peel prefixes and suffixes off, as spaCy's ``Tokenizer._split_affixes`` does."""
    cases = SPECIAL_CASES if specials else {}
    prefixes: list[str] = []
    suffixes: list[str] = []
    last_size = 0
    while string and len(string) != last_size:
        if string in cases:
            break
        last_size = len(string)
        match = _PREFIX_SEARCH(string)
        pre_len = match.end() if match else 0
        prefix = minus_pre = ""
        if pre_len:
            prefix, minus_pre = string[:pre_len], string[pre_len:]
            if minus_pre and minus_pre in cases:
                prefixes.append(prefix)
                string = minus_pre
                break
        rest = string[pre_len:]
        suf_len = _suffix_len(rest) if rest else 0
        suffix = minus_suf = ""
        if suf_len:
            suffix, minus_suf = string[-suf_len:], string[:-suf_len]
            if minus_suf and minus_suf in cases:
                suffixes.append(suffix)
                string = minus_suf
                break
        if pre_len and suf_len and pre_len + suf_len <= len(string):
            string = string[pre_len:-suf_len]
            prefixes.append(prefix)
            suffixes.append(suffix)
        elif pre_len:
            string = minus_pre
            prefixes.append(prefix)
        elif suf_len:
            string = minus_suf
            suffixes.append(suffix)
    return prefixes, string, suffixes


def _attach(string: str, specials: bool = True) -> list[str]:
    """The middle of a chunk: a special case, a URL, or split at its infixes."""
    if not string:
        return []
    special = SPECIAL_CASES.get(string) if specials else None
    if special is not None:
        return list(special)
    if "." in string and len(string) <= _URL_MAX and _URL_MATCH(string):
        return [string]
    tokens: list[str] = []
    start = 0
    for match in _INFIX_FINDITER(string):
        lo, hi = match.span()
        if lo == 0:
            continue
        if lo != start:
            tokens.append(string[start:lo])
        if lo != hi:
            tokens.append(string[lo:hi])
        start = hi
    if string[start:]:
        tokens.append(string[start:])
    return tokens


def _affix_tokens(chunk: str, specials: bool = True) -> list[str]:
    prefixes, middle, suffixes = _split_affixes(chunk, specials)
    return [*prefixes, *_attach(middle, specials), *reversed(suffixes)]


@functools.cache
def _matcher_patterns() -> tuple[dict[tuple[str, ...], str], int]:
    """Special cases that the affix rules would split, keyed by the tokens they split into:
    spaCy re-joins such token runs after splitting (its "special matcher"), e.g. ``):``."""
    patterns = {}
    for key in SPECIAL_CASES:
        tokens = tuple(_affix_tokens(key, specials=False))
        if len(tokens) > 1:
            patterns[tokens] = key
    return patterns, max(len(p) for p in patterns)


def _rejoin_specials(tokens: list[str]) -> list[str]:
    """Longest matches first, then later ones; a match may not touch a taken token."""
    patterns, longest = _matcher_patterns()
    found = []
    for i in range(len(tokens) - 1):
        for j in range(i + 2, min(len(tokens), i + longest) + 1):
            key = patterns.get(tuple(tokens[i:j]))
            if key is not None:
                found.append((j - i, i, j, key))
    if not found:
        return tokens
    taken: set[int] = set()
    chosen = []
    for _, i, j, key in sorted(found, key=lambda f: (-f[0], f[1])):
        if i not in taken and j - 1 not in taken:
            chosen.append((i, j, key))
        taken.update(range(i, j))
    out: list[str] = []
    pos = 0
    for i, j, key in sorted(chosen):
        out += tokens[pos:i]
        out += SPECIAL_CASES[key]
        pos = j
    return out + tokens[pos:]


def _split_unspaced(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        out.extend(_UNSPACED_SPLIT(token) if _has_unspaced(token) else (token,))
    return out


@functools.lru_cache(maxsize=1 << 18)
def split_chunk(chunk: str) -> tuple[str, ...]:
    """Tokens of one whitespace-free chunk (cached: a corpus repeats its chunks)."""
    special = SPECIAL_CASES.get(chunk)
    if special is not None:
        tokens = list(special)
    elif chunk.isalpha() or chunk.isdigit():
        tokens = [chunk]
    else:
        tokens = _affix_tokens(chunk)
        if len(tokens) > 1:
            tokens = _rejoin_specials(tokens)
    if _has_unspaced(chunk):
        tokens = _split_unspaced(tokens)
    return tuple(tokens)


def split_words(text: str) -> list[str]:
    """All words of a text (for tests and one-off use; the signals work on chunk tables)."""
    return [t for chunk in text.split() for t in split_chunk(chunk)]


def split_many(chunks: Iterable[str]) -> list[tuple[str, ...]]:
    return [split_chunk(c) for c in chunks]


_RUNS = regex.compile(r"[\s\x1c-\x1f]+|[^\s\x1c-\x1f]+").finditer


def sentence_count(line: str, ends: frozenset[str] | set[str]) -> int:
    """Sentences spaCy's sentencizer finds in ``line`` (what datatrove's C4 filter counts).

    Unlike words, the count sees whitespace: a whitespace run other than the single space
    after a word is a token of its own (not punctuation), which can start a sentence."""
    tokens: list[str] = []
    for match in _RUNS(line):
        run = match.group()
        if not run[0].isspace():
            tokens.extend(split_chunk(run))
            continue
        rest = run[1:] if run[0] == " " and match.start() > 0 else run
        if rest:
            tokens.append(rest)
    if not tokens:
        return 0
    count, seen_end = 1, False
    for token in tokens:
        in_ends = token in ends
        if seen_end and not in_ends and not _is_punct(token):
            count += 1
            seen_end = False
        elif in_ends:
            seen_end = True
    return count


def _is_punct(token: str) -> bool:
    return all(unicodedata.category(c).startswith("P") for c in token)
