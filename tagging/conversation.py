"""Conversation tags: find intent and facts in advisor notes, WeCom messages and call transcripts.

How a text is read (``conversation_scan``):

* Staff turns of a transcript (``投顾：…``, ``坐席：…``, ``我：…``) are skipped; only what the client said,
  or what the advisor wrote about the client, counts.
* The rest is cut into sentences (。！？；, line breaks) and clauses (，); a clause is the unit of evidence:
  the snippet a suggestion keeps is the clause that matched.
* Each clause is segmented with jieba. A rule keyword matches only on token boundaries, so 新手 does
  not fire inside 新手机 and the negation 别 does not fire inside 别的券商.
* A rule (``ConversationRule``) fires when any keyword matches, and, if it has ``required_any``, one of
  those words is in the same clause too (or in the next clause, when that one has no rule keyword or
  time of its own: 两融的话，他挺感兴趣的). Entries of ``required_any`` starting with ``!`` are exclusions:
  the clause must not contain them (身份证下个月到期 is not a product expiring). Two placeholders
  stand for patterns instead of words: ``{时间}`` (下个月, 3月份, 年底, 下午三点…) and ``{多年}``
  (a duration of five years or more: 十几年, 二十多年, 15年).
* A keyword is negated by a negation cue up to six tokens before it in its clause (不想开两融,
  暂时不考虑开通融资融券, 别给我推两融), by one shortly after it (两融没兴趣, 两融就算了), or by a
  following clause that only says no (问他要不要开两融，他说不需要). Scope stops at 但/不过/只是….
  A-not-A questions (要不要, 有没有, 能不能) are not negations, and a double negation (不是不想开两融)
  cancels out.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import ChainMap, OrderedDict
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.access import roles_for
from core.errors import ApplicationError
from core.services import audit_record
from tagging.models import ConversationRule, CustomerTag, Tag, TagSource, TagSuggestion
from tagging.services import customer_tag_add

logger = logging.getLogger(__name__)


class ConversationError(StrEnum):
    SUGGESTION_NOT_PENDING = "suggestion_not_pending"
    SUGGESTION_NOT_ALLOWED = "suggestion_not_allowed"
    SUGGESTION_OUT_OF_SCOPE = "suggestion_out_of_scope"
    SOURCE_TYPE_INVALID = "suggestion_source_type_invalid"
    RULE_INVALID = "conversation_rule_invalid"


# Who may confirm or reject a suggestion: the people who serve the client, not operators or compliance.
DECIDE_ROLES = roles_for("tag_suggestions.decide")

EXCLUDE_PREFIX = "!"
TIME_PLACEHOLDER = "{时间}"
YEARS_PLACEHOLDER = "{多年}"
PLACEHOLDERS = (TIME_PLACEHOLDER, YEARS_PLACEHOLDER)
NEGATION_WINDOW_TOKENS = 6

# --- the language around the keywords -----------------------------------------------------------

# Negation before a keyword ("不想开两融"). One-character cues must be whole tokens; longer ones need
# only start on a token boundary (jieba writes 先不开, 不太想 as one token).
PRE_CUES = frozenset({
    "不", "没", "别", "勿", "没有", "不想", "不要", "不需要", "不用", "不必", "没兴趣", "不感兴趣", "不考虑",
    "暂时不", "暂不", "还没想", "没想", "没想过", "没考虑", "不打算", "无意", "拒绝", "不愿意", "不愿", "没必要",
    "不太想", "先不", "从不", "从来不", "从没", "从来没", "不敢", "不会", "不是", "并不是", "也不是", "并非",
    "不再", "怕", "害怕", "担心", "不喜欢", "讨厌", "反感", "不接受", "不急", "不着急", "没什么", "不做", "不开",
    "不碰", "不玩", "不追求", "不求", "不准备",
})
# Negation after a keyword ("两融没兴趣", "上午不方便", "两融就算了").
POST_CUES = frozenset({
    "不需要", "不用", "不考虑", "没兴趣", "不感兴趣", "算了", "不想", "不要", "暂时不", "暂不", "先不", "不打算",
    "没必要", "不做", "不开", "不碰", "不玩", "不方便", "不太方便", "没空", "没时间", "不行", "免了", "就不",
    "没想法", "没什么", "不了", "别", "不急", "不着急", "不合适", "不接", "没需求",
})
# A cue that, directly followed by another cue, cancels it: 不是不想, 并不是说不需要.
DOUBLE_NEGATION_FIRST = frozenset({"不是", "并不是", "也不是", "并非", "倒不是", "没有"})
# Words that end the scope of a negation: 不想买基金但想开两融.
SCOPE_BREAKERS = frozenset({"但", "但是", "不过", "可是", "只是", "而是", "倒是", "就是", "然而", "却"})
# A following clause that only says no: "他说不需要", "暂时不考虑了".
REPLY_NEGATION = re.compile(
    r"^(?:他|她|客户|对方|本人|我)?(?:说|表示|回复|回答|答复|觉得|讲)?"
    r"(?:目前|现在|暂时|暂|还|先|都|也|就|完全|根本|真的|确实|应该)*"
    r"(?:不需要|不用|不考虑|没兴趣|不感兴趣|算了|不要|不想|不打算|没必要|没想法|不做|不开|不了|没需求|不急|不着急|免了)"
    r"(?:了|的|吧|啊|呢|哈|哦|呀)*$"
)
# Speakers of a transcript or chat export; staff turns are skipped.
STAFF_SPEAKERS = frozenset({"投顾", "客户经理", "理财经理", "投资顾问", "顾问", "坐席", "客服", "经理", "我", "我方", "员工"})
SPEAKER = re.compile(r"(?:^|(?<=[\s。！？!?；;]))"
                     r"(投资顾问|客户经理|理财经理|投顾|顾问|坐席|客服|经理|我方|员工|客户|用户|客人|我)\s*[:：]")
SENTENCE_SPLIT = re.compile(r"[。！？!?；;\n\r…]+")
CLAUSE_SPLIT = re.compile(r"[，,]+")

# --- time expressions ---------------------------------------------------------------------------

_CN_DIGIT = "一二两三四五六七八九十"
_NUM = rf"(?:\d{{1,4}}|[{_CN_DIGIT}]{{1,3}})"
TIME_PATTERN = re.compile(
    "|".join([
        r"下下个?月", r"下个?月", r"这个?月", r"本月", r"当月", r"月底", r"月初", r"月中", r"月末", r"月内",
        r"年底", r"年初", r"年末", r"年中", r"年内", r"明年", r"今年", r"下半年", r"上半年", r"下个?季度",
        r"季度末", r"季末", r"下周", r"下个?星期", r"这周", r"本周", r"明天", r"后天", r"过几天", r"过两天",
        r"春节[前后]", r"节后", r"国庆[前后]?", r"元旦[前后]?",
        rf"{_NUM}年{_NUM}月(?:份)?(?:{_NUM}[日号])?", rf"{_NUM}月(?:份|{_NUM}[日号]|底|初|中)?",
        rf"{_NUM}[日号]", rf"(?:还有)?{_NUM}(?:天|周|个月|个星期)(?:后|内|以内|之后|左右)?",
        r"(?:上午|早上|早晨|中午|下午|晚上|傍晚|夜里)?" rf"{_NUM}点(?:半|{_NUM}分?)?(?:以后|之后|后|以前|之前|前|左右)?",
        r"收盘(?:以后|之后|后)", r"开盘(?:以前|之前|前)", r"下班(?:以后|之后|后)", r"午休",
        r"上午", r"早上", r"早晨", r"中午", r"下午", r"晚上", r"傍晚", r"夜里", r"白天",
    ])
)
YEARS_PATTERN = re.compile(rf"({_NUM}|[五六七八九十几]+[几多来]?|好多|很多|好些|几十|多)(?:多)?个?年")


def _cn_number(text: str) -> int | None:
    """Small Chinese numerals as used for years: 五六 → 5, 十五 → 15, 二十多 → 20, 十几 → 10."""
    if text in ("好多", "很多", "好些", "几十", "多"):
        return 10
    text = text.rstrip("几多来")
    if not text:
        return None
    if text.isdigit():
        return int(text)
    values = {c: i for i, c in enumerate("零一二三四五六七八九", start=0)} | {"两": 2}
    if "十" in text:
        tens, _, units = text.partition("十")
        return (values.get(tens[:1], 1) if tens else 1) * 10 + (values.get(units[:1], 0) if units else 0)
    return values.get(text[0])


def _years_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in YEARS_PATTERN.finditer(text):
        number = _cn_number(m.group(1))
        if number is not None and number >= 5:
            spans.append(m.span())
    return spans


def time_expressions(text: str) -> list[str]:
    """Time expressions in reading order (下个月, 3月份, 年底, 下午三点以后 …)."""
    return [m.group(0) for m in TIME_PATTERN.finditer(text)]


def due_month(expression: str, today: date) -> str | None:
    """The month (YYYY-MM) a time expression points at, when it names one; None when it does not."""
    first = today.replace(day=1)
    next_month = (first + timedelta(days=32)).replace(day=1)
    if re.fullmatch(r"下下个?月", expression):
        return f"{(next_month + timedelta(days=32)).replace(day=1):%Y-%m}"
    if re.fullmatch(r"下个?月", expression):
        return f"{next_month:%Y-%m}"
    if re.fullmatch(r"这个?月|本月|当月|月底|月初|月中|月末|月内", expression):
        return f"{today:%Y-%m}"
    if re.fullmatch(r"年底|年末", expression):
        return f"{today.year}-12"
    if re.fullmatch(r"下周|下个?星期|明天|后天|过几天|过两天", expression):
        return f"{today + timedelta(days=7):%Y-%m}"
    m = re.fullmatch(rf"(?:({_NUM})年)?({_NUM})月.*", expression)
    if m:
        month = _cn_number(m.group(2))
        if month and 1 <= month <= 12:
            year = _cn_number(m.group(1)) if m.group(1) else None
            if year is None:
                year = today.year if month >= today.month else today.year + 1
            elif year < 100:
                year += 2000
            return f"{year}-{month:02d}"
    return None


# --- segmentation ------------------------------------------------------------------------------

_base_tokenizer = None
_tokenizers: OrderedDict = OrderedDict()  # rule words → tokenizer that knows them (a few rule sets at most)
_tokenizer_lock = threading.Lock()
TOKENIZER_CACHE_SIZE = 8

# A dictionary word at least this frequent has a meaning of its own (开心, 问题), not a verb plus something.
COMMON_WORD_FREQ = 100
# Frequency given to rule words jieba does not know: that of a common word, so that 两融 wins over
# the dictionary's 融和 in 问两融和期权.
TAUGHT_WORD_FREQ = 2000


def _base():
    """jieba's dictionary, loaded once per process on first use, without logging its loading."""
    global _base_tokenizer
    if _base_tokenizer is None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
        _base_tokenizer = tokenizer
    return _base_tokenizer


def _tokenizer_for(keywords: frozenset, others: frozenset):
    """A tokenizer that keeps the rule words whole (两融, 科创板, 定投 are not in jieba's dictionary).

    Keywords that jieba knows but rarely sees are raised to a common word's frequency (学/期权, not
    学期/权). Each rule set gets its own tokenizer over the shared dictionary (a ChainMap overlay),
    so what one text gives never depends on which rules were used before.
    """
    import jieba

    key = (keywords, others)
    with _tokenizer_lock:
        if key in _tokenizers:
            _tokenizers.move_to_end(key)
            return _tokenizers[key]
        base = _base()
        tokenizer = jieba.Tokenizer()
        tokenizer.FREQ, tokenizer.total, tokenizer.initialized = ChainMap({}, base.FREQ), base.total, True
        for words, floor in ((keywords, TAUGHT_WORD_FREQ), (others, 1)):
            for word in sorted(words):
                if word and not word.isascii() and (tokenizer.FREQ.get(word) or 0) < floor:
                    tokenizer.add_word(word, freq=max(TAUGHT_WORD_FREQ, tokenizer.suggest_freq(word)))
        _tokenizers[key] = tokenizer
        while len(_tokenizers) > TOKENIZER_CACHE_SIZE:
            _tokenizers.popitem(last=False)
        return tokenizer


@dataclass
class _Clause:
    text: str
    folded: str
    starts: frozenset
    ends: frozenset
    tokens: list  # [(word, start, end)]
    token_at: dict  # start → word
    freq: object  # the tokenizer's word frequencies

    @classmethod
    def of(cls, text: str, tokenizer) -> _Clause:
        tokens = [(w, s, e) for w, s, e in tokenizer.tokenize(text) if w.strip()]
        return cls(text=text, folded=text.lower(), starts=frozenset(s for _, s, _ in tokens),
                   ends=frozenset(e for _, _, e in tokens), tokens=tokens, token_at={s: w for w, s, _ in tokens},
                   freq=tokenizer.FREQ)

    def find(self, word: str, *, how: str = "keyword", lo: int = 0, hi: int | None = None) -> list[int]:
        """Start offsets of ``word`` within [lo, hi) that respect token boundaries.

        ``how``: "keyword" — on both boundaries, or (two characters or more) the end of one token: 上午
        in 今天上午 counts, 新手 in 新手机 and 要是 in 主要/是 do not; "start" — starting on a boundary
        (不开 in 先不开); "required" — like "start", but a single character only begins a token that
        is itself or no common word (想 in the rare 想开 or the unknown 签了, not 开 in 开心); "edge" —
        starting or ending on one (加 in 我加/他, for exclusions);
        "cue" — like "start", but a single character must be a whole token (不 is a negation, the 不 of
        不错 is not).
        """
        hi = len(self.text) if hi is None else hi
        if word in PLACEHOLDERS:
            spans = _years_spans(self.text) if word == YEARS_PLACEHOLDER else [
                m.span() for m in TIME_PATTERN.finditer(self.text)]
            return [s for s, e in spans if s >= lo and e <= hi]
        needle, found, i = word.lower(), [], self.folded.find(word.lower(), lo)
        while i != -1 and i + len(needle) <= hi:
            start_ok, end_ok = i in self.starts, (i + len(needle)) in self.ends
            if how == "keyword":
                ok = end_ok and (start_ok or (len(needle) > 1 and self._inside_one_token(i, i + len(needle))))
            elif how == "start":
                ok = start_ok
            elif how == "required":
                token = self.token_at.get(i, "")
                ok = start_ok and (len(needle) > 1 or token == needle
                                   or (self.freq.get(token) or 0) < COMMON_WORD_FREQ)
            elif how == "edge":
                ok = start_ok or end_ok
            else:
                ok = start_ok and (end_ok or len(needle) > 1)
            if ok:
                found.append(i)
            i = self.folded.find(needle, i + 1)
        return found

    def _inside_one_token(self, start: int, end: int) -> bool:
        return any(s <= start and end <= e for _w, s, e in self.tokens)

    def span_of(self, word: str, start: int) -> tuple[int, int]:
        if word in PLACEHOLDERS:
            spans = _years_spans(self.text) if word == YEARS_PLACEHOLDER else [
                m.span() for m in TIME_PATTERN.finditer(self.text)]
            return next((s, e) for s, e in spans if s == start)
        return start, start + len(word)


# --- rules -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleSpec:
    """A conversation rule detached from the database (what ``conversation_scan`` works on)."""

    tag_code: str
    keywords: tuple[str, ...]
    required_any: tuple[str, ...] = ()
    rule_id: int | None = None

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(w for w in self.required_any if not w.startswith(EXCLUDE_PREFIX))

    @property
    def excluded(self) -> tuple[str, ...]:
        return tuple(w[len(EXCLUDE_PREFIX):] for w in self.required_any if w.startswith(EXCLUDE_PREFIX))

    @classmethod
    def of(cls, rule) -> RuleSpec:
        if isinstance(rule, RuleSpec):
            return rule
        return cls(tag_code=rule.tag.code, keywords=tuple(rule.keywords or ()),
                   required_any=tuple(rule.required_any or ()), rule_id=rule.pk)


def _rules_enabled() -> list[RuleSpec]:
    return [RuleSpec.of(r) for r in ConversationRule.objects.filter(enabled=True, tag__active=True)
            .select_related("tag").order_by("tag__category__position", "tag__code", "pk")]


@dataclass(frozen=True)
class Match:
    """One tag found in a text: the clause that justifies it and what else was read from it."""

    tag_code: str
    snippet: str
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A keyword seen in a clause, matched or not (``reason`` says why not); for the operators' try-it box."""

    tag_code: str
    keyword: str
    clause: str
    reason: str  # "" (matched), "negated", "excluded", "missing_required"
    rule_id: int | None


def _segments(text: str) -> list[tuple[str, str]]:
    """(speaker, text) turns; speaker is "" for unlabelled text (an advisor's note, a client's message)."""
    marks = list(SPEAKER.finditer(text))
    if not marks:
        return [("", text)]
    turns = [("", text[:marks[0].start()])] if text[:marks[0].start()].strip() else []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        turns.append((m.group(1), text[m.end():end]))
    return turns


def _sentences(text: str) -> list[list[str]]:
    """Client-side sentences, each a list of clauses."""
    out = []
    for speaker, turn in _segments(text):
        if speaker in STAFF_SPEAKERS:
            continue
        for sentence in SENTENCE_SPLIT.split(turn):
            clauses = [c.strip() for c in CLAUSE_SPLIT.split(sentence) if c.strip()]
            if clauses:
                out.append(clauses)
    return out


def _cues(clause: _Clause, cue_words: frozenset, lo: int, hi: int) -> list[tuple[int, int]]:
    spans = []
    for cue in cue_words:
        for start in clause.find(cue, how="cue", lo=lo, hi=hi):
            text = clause.text
            # 要不要 / 有没有 / 能不能 / 想不想 ask a question; they do not negate
            if cue[0] in "不没" and 0 < start < len(text) - 1 and text[start - 1] == text[start + 1]:
                continue
            spans.append((start, start + len(cue)))
    # keep the longest cue at each place
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    kept: list[tuple[int, int]] = []
    for span in spans:
        if kept and span[0] < kept[-1][1]:
            continue
        kept.append(span)
    return kept


def _cancel_double_negation(clause: _Clause, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, i = [], 0
    while i < len(spans):
        start, end = spans[i]
        if (clause.text[start:end] in DOUBLE_NEGATION_FIRST and i + 1 < len(spans)
                and spans[i + 1][0] - end <= 1):
            i += 2
            continue
        out.append(spans[i])
        i += 1
    return out


def _window(clause: _Clause, start: int, end: int) -> tuple[int, int]:
    """Character range around a keyword in which a negation applies: up to N tokens each side, not past 但/不过."""
    before = [t for t in clause.tokens if t[2] <= start]
    after = [t for t in clause.tokens if t[1] >= end]
    lo_tokens = before[-NEGATION_WINDOW_TOKENS:]
    for i in range(len(lo_tokens) - 1, -1, -1):
        if lo_tokens[i][0] in SCOPE_BREAKERS:
            lo_tokens = lo_tokens[i + 1:]
            break
    hi_tokens = after[:NEGATION_WINDOW_TOKENS]
    for i, token in enumerate(hi_tokens):
        if token[0] in SCOPE_BREAKERS:
            hi_tokens = hi_tokens[:i]
            break
    lo = lo_tokens[0][1] if lo_tokens else start
    hi = hi_tokens[-1][2] if hi_tokens else end
    return lo, hi


def _negated(clause: _Clause, start: int, end: int, next_clause: str | None) -> bool:
    lo, hi = _window(clause, start, end)
    before = _cancel_double_negation(clause, _cues(clause, PRE_CUES, lo, start))
    if before:
        return True
    if _cues(clause, POST_CUES, end, hi):
        return True
    return bool(next_clause and REPLY_NEGATION.match(next_clause))


def _rule_words(specs: list[RuleSpec]) -> tuple[set[str], set[str]]:
    keywords = {w for spec in specs for w in spec.keywords if w not in PLACEHOLDERS}
    others = {w.lstrip(EXCLUDE_PREFIX) for spec in specs for w in spec.required_any if w not in PLACEHOLDERS}
    return keywords, others - keywords


def _match_in(clause: _Clause, spec: RuleSpec, keyword: str, starts: list[int],
              following: str | None) -> tuple[str, tuple[int, int] | None, str | None]:
    """(reason, keyword span, required word) of one keyword of one rule in one clause; reason "" = match."""
    if any(clause.find(word, how="edge") for word in spec.excluded):
        return "excluded", None, None
    required = next((w for w in spec.required
                     if (w not in PLACEHOLDERS and w in keyword) or clause.find(w, how="required")), None)
    if spec.required and required is None:
        return "missing_required", None, None
    spans = [clause.span_of(keyword, s) for s in starts]
    positive = next((span for span in spans if not _negated(clause, *span, following)), None)
    if positive is None:
        return "negated", None, None
    return "", positive, required


def _scan(text: str, specs: list[RuleSpec]) -> list[tuple[Hit, Match | None]]:
    keywords, other_words = _rule_words(specs)
    tokenizer = _tokenizer_for(frozenset(keywords), frozenset(other_words))
    out = []
    for clauses in _sentences(text or ""):
        parsed = [_Clause.of(c, tokenizer) for c in clauses]
        # a clause without any rule keyword or time may complete the one before it: "两融的话，他挺感兴趣的"
        plain = [not any(clause.find(k) for k in keywords) and not TIME_PATTERN.search(clause.text)
                 for clause in parsed]
        for index, clause in enumerate(parsed):
            following = clauses[index + 1] if index + 1 < len(clauses) else None
            for spec in specs:
                for keyword in sorted(spec.keywords, key=len, reverse=True):
                    starts = clause.find(keyword)
                    if not starts:
                        continue
                    where = clause
                    reason, span, required = _match_in(clause, spec, keyword, starts, following)
                    if reason == "missing_required" and following is not None and plain[index + 1]:
                        where = _Clause.of(f"{clause.text}，{following}", tokenizer)
                        after = clauses[index + 2] if index + 2 < len(clauses) else None
                        reason, span, required = _match_in(where, spec, keyword, where.find(keyword), after)
                    if reason:
                        out.append((Hit(spec.tag_code, keyword, where.text, reason, spec.rule_id), None))
                        break
                    start, end = span
                    detail = {"keyword": where.text[start:end], "prefix": where.text[:start],
                              "suffix": where.text[end:], "rule_id": spec.rule_id}
                    if required:
                        detail["required"] = required
                    times = time_expressions(where.text)
                    if times:
                        detail["time"] = times[0]
                        month = due_month(times[0], timezone.localdate())
                        if month:
                            detail["due_month"] = month
                    out.append((Hit(spec.tag_code, keyword, where.text, "", spec.rule_id),
                                Match(tag_code=spec.tag_code, snippet=where.text, detail=detail)))
                    break
    return out


def conversation_scan(*, text: str, rules=None) -> list[Match]:
    """Tags the text gives evidence for, one Match per tag (its first matching clause), in reading order.

    ``rules``: ConversationRule rows or RuleSpecs; None loads the enabled rules of active tags.
    Pure apart from that load: the same text and rules always give the same matches.
    """
    specs = [RuleSpec.of(r) for r in rules] if rules is not None else _rules_enabled()
    matches: dict[str, Match] = {}
    for _hit, match in _scan(text, specs):
        if match is not None and match.tag_code not in matches:
            matches[match.tag_code] = match
    return list(matches.values())


def conversation_explain(*, text: str, rules=None) -> list[Hit]:
    """Every keyword seen, with why it did or did not become a match (operators tune rules with this)."""
    specs = [RuleSpec.of(r) for r in rules] if rules is not None else _rules_enabled()
    return [hit for hit, _match in _scan(text, specs)]


# --- suggestions: services and selectors --------------------------------------------------------

SNIPPET_MAX = 500


def suggestions_create_for_text(*, customer, text: str, source_type: str, source_id) -> list[TagSuggestion]:
    """Pending suggestions for the tags ``text`` gives evidence for; returns the ones created now.

    Idempotent per source: scanning the same note/message/call twice creates nothing new. A tag the
    customer currently has, or already has a pending suggestion for, is not suggested again.
    """
    if source_type not in TagSuggestion.SourceType.values:
        raise ApplicationError(ConversationError.SOURCE_TYPE_INVALID, f"未知的来源类型：{source_type}")
    matches = conversation_scan(text=text)
    if not matches:
        return []
    tags = {t.code: t for t in Tag.objects.filter(code__in=[m.tag_code for m in matches], active=True)}
    taken = set(CustomerTag.objects.current().filter(customer=customer, tag__in=tags.values())
                .values_list("tag__code", flat=True))
    taken |= set(TagSuggestion.objects.filter(customer=customer, status=TagSuggestion.Status.PENDING,
                                              tag__in=tags.values()).values_list("tag__code", flat=True))
    created = []
    for match in matches:
        tag = tags.get(match.tag_code)
        if tag is None or tag.code in taken:
            continue
        try:
            with transaction.atomic():
                suggestion, was_created = TagSuggestion.objects.get_or_create(
                    customer=customer, tag=tag, source_type=source_type, source_id=str(source_id),
                    defaults={"snippet": match.snippet[:SNIPPET_MAX], "detail": match.detail})
        except IntegrityError:  # a concurrent scan of the same source won the race
            continue
        if was_created:
            created.append(suggestion)
    return created


def _check_may_decide(*, user, suggestion: TagSuggestion) -> None:
    from customers.models import Customer

    if getattr(user, "role", None) not in DECIDE_ROLES:
        raise ApplicationError(ConversationError.SUGGESTION_NOT_ALLOWED, "您的角色不能处理标签建议", status_code=403)
    if not Customer.objects.visible_to(user).filter(pk=suggestion.customer_id).exists():
        raise ApplicationError(ConversationError.SUGGESTION_OUT_OF_SCOPE, "找不到该标签建议", status_code=404)


def _lock_pending(suggestion: TagSuggestion) -> TagSuggestion:
    locked = TagSuggestion.objects.select_for_update().select_related("tag", "customer").get(pk=suggestion.pk)
    if locked.status != TagSuggestion.Status.PENDING:
        raise ApplicationError(ConversationError.SUGGESTION_NOT_PENDING, "该建议已经处理过了", status_code=409)
    return locked


@transaction.atomic
def suggestion_confirm(*, user, suggestion: TagSuggestion) -> CustomerTag:
    """The advisor agrees: the tag is set with source "conversation", the snippet as evidence and the
    tag's default lifetime; other pending suggestions of the same tag for this customer close with it."""
    _check_may_decide(user=user, suggestion=suggestion)
    suggestion = _lock_pending(suggestion)
    tag, now = suggestion.tag, timezone.now()
    evidence_data = {"suggestion_id": suggestion.pk, "source_type": suggestion.source_type,
                     "source_id": suggestion.source_id,
                     **{k: v for k, v in suggestion.detail.items() if k in ("keyword", "time", "due_month")}}
    customer_tag = customer_tag_add(customer=suggestion.customer, tag=tag, source=TagSource.CONVERSATION, actor=user,
                                    evidence=suggestion.snippet, evidence_data=evidence_data)
    TagSuggestion.objects.filter(customer=suggestion.customer, tag=tag, status=TagSuggestion.Status.PENDING).update(
        status=TagSuggestion.Status.CONFIRMED, decided_by=user, decided_at=now)
    audit_record(actor=user, action="tag_suggestion.confirm", target_type="customer",
                 target_id=suggestion.customer.external_id, details={"tag": tag.code, "suggestion": suggestion.pk})
    return customer_tag


@transaction.atomic
def suggestion_reject(*, user, suggestion: TagSuggestion) -> TagSuggestion:
    """The advisor disagrees: recorded on the suggestion; rules and the customer's tags stay as they are."""
    _check_may_decide(user=user, suggestion=suggestion)
    suggestion = _lock_pending(suggestion)
    suggestion.status, suggestion.decided_by, suggestion.decided_at = (
        TagSuggestion.Status.REJECTED, user, timezone.now())
    suggestion.save(update_fields=["status", "decided_by", "decided_at"])
    audit_record(actor=user, action="tag_suggestion.reject", target_type="customer",
                 target_id=suggestion.customer.external_id,
                 details={"tag": suggestion.tag.code, "suggestion": suggestion.pk})
    return suggestion


def suggestions_pending(*, customer):
    """Pending suggestions of a customer, newest first, leaving out tags the customer has meanwhile."""
    current = CustomerTag.objects.current().filter(customer=customer).values("tag_id")
    return (TagSuggestion.objects.filter(customer=customer, status=TagSuggestion.Status.PENDING)
            .exclude(tag_id__in=current).select_related("tag", "tag__category").order_by("-created_at", "-pk"))


def suggestion_get_for_user(*, user, suggestion_id: int) -> TagSuggestion:
    """A suggestion by id if the user may see its customer; 404 otherwise."""
    from django.shortcuts import get_object_or_404

    return get_object_or_404(TagSuggestion.objects.visible_to(user).select_related("tag", "customer"),
                             pk=suggestion_id)


def note_created_scan(event) -> None:
    """core.events.NoteCreated: a saved note becomes suggestions. Runs after commit; never fails the note."""
    from customers.models import Note

    note = Note.objects.select_related("customer").filter(pk=event.note_id).first()
    if note is None:
        return
    try:
        suggestions_create_for_text(customer=note.customer, text=note.body,
                                    source_type=TagSuggestion.SourceType.NOTE, source_id=note.pk)
    except Exception:  # noqa: BLE001 - a scanning problem must not turn a saved note into an error page
        logger.exception("conversation scan failed for note %s", note.pk)


# --- operators' rules ---------------------------------------------------------------------------

WORD_SPLIT = re.compile(r"[,，、;；\s]+")


def words_parse(text: str) -> list[str]:
    """'两融、融资融券, 融券' → ['两融', '融资融券', '融券'] (order kept, duplicates dropped)."""
    seen: dict[str, None] = {}
    for word in WORD_SPLIT.split(text or ""):
        if word:
            seen.setdefault(word, None)
    return list(seen)


@transaction.atomic
def conversation_rule_create(*, actor, tag: Tag, keywords: list[str], required_any: list[str] | None = None,
                             excluded: list[str] | None = None, enabled: bool = True) -> ConversationRule:
    """A keyword rule; ``excluded`` words are stored in required_any with a leading "!"."""
    keywords = [w.strip() for w in keywords if w.strip()]
    if not keywords:
        raise ApplicationError(ConversationError.RULE_INVALID, "请至少填写一个关键词", [{"field": "keywords"}])
    required = [w.strip() for w in (required_any or []) if w.strip()]
    required += [EXCLUDE_PREFIX + w.strip().lstrip(EXCLUDE_PREFIX) for w in (excluded or []) if w.strip()]
    rule = ConversationRule.objects.create(tag=tag, keywords=keywords, required_any=required, enabled=enabled)
    audit_record(actor=actor, action="conversation_rule.create", target_type="tag", target_id=tag.code,
                 details={"rule": rule.pk, "keywords": keywords, "required_any": required})
    return rule


@transaction.atomic
def conversation_rule_set_enabled(*, actor, rule: ConversationRule, enabled: bool) -> ConversationRule:
    if rule.enabled != enabled:
        rule.enabled = enabled
        rule.save(update_fields=["enabled"])
        audit_record(actor=actor, action="conversation_rule.enable" if enabled else "conversation_rule.disable",
                     target_type="tag", target_id=rule.tag.code, details={"rule": rule.pk})
    return rule
