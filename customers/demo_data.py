"""Realistic, deterministic demo data at any scale: branches, advisors, products, customers,
trades and behaviour events, with the signals the analytics pages are meant to find.

Customers are drawn in Python from ``random.Random(seed)`` (names, ID numbers and mobiles
need Python, and encryption must go through ``core.crypto``) and loaded with COPY. Each
customer also gets a row in a temporary *profile* table that fixes how many trades and events
they have and in which date windows; trades and events are then expanded inside PostgreSQL
with ``generate_series``, taking their randomness from ``hashint8extended(ordinal, salt)``
so the result does not depend on the plan, on parallel workers or on the row order.

Planted on purpose:
- channels differ in quality: 抖音信息流 brings the most sign-ups and the worst funding,
  assets and retention; 老客推荐 is small and converts best;
- the account-opening funnel loses people at every step;
- opened clients who read more than 5 news items in their first 30 days make a second
  trade far more often (the "magic number");
- some high-value clients are dormant: no trade in the last 6+ months;
- trades happen in A-share trading hours on weekdays, most events too (Asia/Shanghai).

Everything is relative to ``today`` (Asia/Shanghai), so the same (N, seed) on the same day
gives the same rows; encrypted columns differ between runs (Fernet uses a random IV) while
their plaintext, hashes and masks do not.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import random
import time
import traceback
from bisect import bisect
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from itertools import accumulate
from queue import Empty
from typing import TextIO

from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.utils import timezone

from core.crypto import blind_index, encrypt, mask_id_number, mask_mobile
from core.db import copy_in
from core.demo import demo_staff_load
from core.models import Role, User
from core.services import branch_upsert
from core.validators import id_number_check_digit
from customers.models import Customer, Product

HISTORY_DAYS = 3 * 365
CUSTOMERS_PER_ADVISOR = 500
CUSTOMERS_PER_BRANCH = 25_000
COPY_CHUNK = 20_000
# below this many customers, inserting with the indexes in place is faster than rebuilding them
REBUILD_INDEXES_FROM = 20_000
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
SECONDS_EAST = 8 * 3600  # Asia/Shanghai has had no DST since 1991
MAX_EVENTS_PER_CUSTOMER = 99_999  # ordinal * 100000 + k must stay unique
DEMO_ADVISORS = ("advisor_bj", "advisor_bj2", "advisor_sh", "advisor_sh2", "advisor_sz", "advisor_hz")


class DemoDataError(Exception):
    """The seed cannot run against this database (it already holds customers)."""


# --- reference data ----------------------------------------------------------------------

@dataclass(frozen=True)
class BranchSpec:
    code: str
    name: str
    region: str
    weight: float  # relative size of the client base
    area_codes: tuple[str, ...]  # GB/T 2260 districts for locally issued ID numbers


BRANCHES = [  # the four demo branches first, then the order in which a growing firm adds them
    BranchSpec("BJ01", "北京金融街营业部", "北京", 3.0, ("110101", "110102", "110105", "110108")),
    BranchSpec("SH01", "上海陆家嘴营业部", "上海", 3.0, ("310101", "310104", "310115", "310112")),
    BranchSpec("SZ01", "深圳福田营业部", "深圳", 2.0, ("440303", "440304", "440305", "440306")),
    BranchSpec("HZ01", "杭州西湖营业部", "浙江", 2.0, ("330102", "330106", "330108", "330110")),
    BranchSpec("GZ01", "广州天河营业部", "广东", 2.0, ("440106", "440104", "440111")),
    BranchSpec("NJ01", "南京新街口营业部", "江苏", 1.5, ("320102", "320104", "320106")),
    BranchSpec("CD01", "成都天府营业部", "四川", 1.5, ("510104", "510107", "510105")),
    BranchSpec("WH01", "武汉中南路营业部", "湖北", 1.3, ("420106", "420102", "420111")),
    BranchSpec("SH02", "上海静安营业部", "上海", 1.8, ("310106", "310105", "310110")),
    BranchSpec("BJ02", "北京朝阳门营业部", "北京", 1.8, ("110105", "110106", "110108")),
    BranchSpec("SZ02", "深圳南山营业部", "深圳", 1.5, ("440305", "440306", "440307")),
    BranchSpec("XA01", "西安高新营业部", "陕西", 1.0, ("610113", "610104", "610103")),
    BranchSpec("CQ01", "重庆解放碑营业部", "重庆", 1.2, ("500103", "500105", "500106")),
    BranchSpec("TJ01", "天津南京路营业部", "天津", 1.1, ("120101", "120103", "120104")),
    BranchSpec("SU01", "苏州工业园区营业部", "江苏", 1.2, ("320508", "320506", "320505")),
    BranchSpec("CS01", "长沙芙蓉中路营业部", "湖南", 1.0, ("430102", "430103", "430104")),
    BranchSpec("ZZ01", "郑州金水路营业部", "河南", 1.0, ("410105", "410102", "410103")),
    BranchSpec("QD01", "青岛香港中路营业部", "山东", 1.0, ("370202", "370203", "370212")),
    BranchSpec("XM01", "厦门思明营业部", "福建", 0.9, ("350203", "350206", "350211")),
    BranchSpec("FZ01", "福州五四路营业部", "福建", 0.8, ("350102", "350103", "350104")),
    BranchSpec("HF01", "合肥政务区营业部", "安徽", 0.9, ("340104", "340103", "340111")),
    BranchSpec("JN01", "济南泉城路营业部", "山东", 0.9, ("370102", "370103", "370105")),
    BranchSpec("NB01", "宁波江东营业部", "浙江", 1.0, ("330212", "330203", "330206")),
    BranchSpec("SY01", "沈阳青年大街营业部", "辽宁", 0.8, ("210102", "210103", "210104")),
    BranchSpec("DL01", "大连人民路营业部", "辽宁", 0.7, ("210202", "210203", "210204")),
    BranchSpec("WX01", "无锡中山路营业部", "江苏", 0.8, ("320213", "320211", "320214")),
    BranchSpec("KM01", "昆明北京路营业部", "云南", 0.7, ("530102", "530103", "530111")),
    BranchSpec("NN01", "南宁民族大道营业部", "广西", 0.6, ("450103", "450102", "450107")),
    BranchSpec("NC01", "南昌红谷滩营业部", "江西", 0.6, ("360113", "360102", "360111")),
    BranchSpec("GY01", "贵阳中华北路营业部", "贵州", 0.5, ("520102", "520103", "520111")),
    BranchSpec("TY01", "太原府西街营业部", "山西", 0.6, ("140105", "140106", "140107")),
    BranchSpec("SJ01", "石家庄中山路营业部", "河北", 0.6, ("130102", "130104", "130105")),
    BranchSpec("HB01", "哈尔滨中央大街营业部", "黑龙江", 0.6, ("230102", "230103", "230104")),
    BranchSpec("CC01", "长春人民大街营业部", "吉林", 0.5, ("220102", "220103", "220104")),
    BranchSpec("LZ01", "兰州庆阳路营业部", "甘肃", 0.4, ("620102", "620103", "620104")),
    BranchSpec("WZ01", "温州车站大道营业部", "浙江", 0.8, ("330302", "330303", "330304")),
    BranchSpec("DG01", "东莞南城营业部", "广东", 0.8, ("441900",)),
    BranchSpec("FS01", "佛山季华路营业部", "广东", 0.8, ("440604", "440605", "440606")),
    BranchSpec("HK01", "海口国贸营业部", "海南", 0.4, ("460106", "460105", "460107")),
    BranchSpec("UR01", "乌鲁木齐新华北路营业部", "新疆", 0.3, ("650102", "650103", "650104")),
    BranchSpec("HH01", "呼和浩特新华大街营业部", "内蒙古", 0.3, ("150102", "150103", "150104")),
    BranchSpec("YT01", "烟台南大街营业部", "山东", 0.5, ("370602", "370611", "370613")),
    BranchSpec("ZH01", "珠海吉大营业部", "广东", 0.5, ("440402", "440403", "440404")),
    BranchSpec("XZ01", "徐州淮海路营业部", "江苏", 0.5, ("320302", "320303", "320311")),
]
# birthplaces of clients who moved to the branch's city
MIGRANT_AREA_CODES = ("430521", "411302", "342201", "511302", "360730", "421182", "450881", "612401",
                      "130682", "371326", "410327", "513030", "362101", "441581", "350583", "232301")


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    utm_source: str
    utm_medium: str
    campaigns: tuple[str, ...]
    share: float
    steps: tuple[float, float, float, float]  # pass rates id→password→video→opened→funded
    assets_median: float
    age_mean: float
    news_engaged: float  # share of opened clients reading >5 news items in their first 30 days
    churn: float  # share of funded clients who stop trading within months
    activity: float  # trading frequency multiplier


CHANNELS = [
    ChannelSpec("抖音信息流", "douyin", "cpc", ("dy_kaihu_lijin", "dy_xinren_licai", "dy_zhibo_kaipan"), 0.34,
                (0.70, 0.74, 0.85, 0.42), 12_000, 30, 0.10, 0.62, 0.6),
    ChannelSpec("腾讯广告", "tencent_ads", "cpm", ("wx_pyq_kaihu", "gzh_wenzhang_kaihu"), 0.14,
                (0.78, 0.80, 0.88, 0.55), 30_000, 34, 0.18, 0.42, 0.85),
    ChannelSpec("应用商店", "appstore", "cpd", ("huawei_search", "xiaomi_store", "apple_search_ads"), 0.16,
                (0.82, 0.84, 0.90, 0.62), 40_000, 33, 0.22, 0.35, 1.0),
    ChannelSpec("财经门户合作", "eastmoney", "partner", ("dfcf_kaihu", "ths_kaihu"), 0.12,
                (0.85, 0.86, 0.90, 0.68), 80_000, 38, 0.38, 0.25, 1.3),
    ChannelSpec("银行合作", "bank", "partner", ("cmb_yinzheng", "ccb_daifa"), 0.07,
                (0.90, 0.90, 0.94, 0.80), 180_000, 45, 0.25, 0.15, 0.9),
    ChannelSpec("营业部地推", "branch", "offline", ("shequ_huodong", "qiye_jinrong"), 0.06,
                (0.93, 0.93, 0.96, 0.85), 220_000, 48, 0.25, 0.12, 1.0),
    ChannelSpec("自然流量", "organic", "none", ("",), 0.07,
                (0.84, 0.85, 0.90, 0.68), 60_000, 36, 0.28, 0.30, 1.1),
    ChannelSpec("老客推荐", "referral", "mgm", ("laodaixin_2025", "laodaixin_2026"), 0.04,
                (0.94, 0.94, 0.96, 0.88), 300_000, 41, 0.45, 0.10, 1.4),
]

# code, name, type, risk, trade weight (how often clients trade it)
PRODUCTS = [
    ("SH600519", "贵州茅台", "stock", "R4", 10), ("SH601318", "中国平安", "stock", "R4", 10),
    ("SH600036", "招商银行", "stock", "R3", 10), ("SZ000858", "五粮液", "stock", "R4", 8),
    ("SZ300750", "宁德时代", "stock", "R4", 10), ("SZ002594", "比亚迪", "stock", "R4", 9),
    ("SH601899", "紫金矿业", "stock", "R4", 7), ("SZ000333", "美的集团", "stock", "R3", 7),
    ("SH688981", "中芯国际", "star", "R4", 4), ("SH688111", "金山办公", "star", "R4", 3),
    ("SH688256", "寒武纪", "star", "R5", 3),
    ("OF000198", "天弘余额宝货币", "fund", "R1", 6), ("OF003003", "华夏现金增利货币A", "fund", "R1", 4),
    ("SH510300", "华泰柏瑞沪深300ETF", "fund", "R3", 8), ("SH510500", "南方中证500ETF", "fund", "R3", 6),
    ("OF110011", "易方达优质精选混合", "fund", "R3", 4), ("OF005827", "易方达蓝筹精选混合", "fund", "R3", 4),
    ("OF161725", "招商中证白酒指数", "fund", "R4", 4), ("OF270042", "广发纳斯达克100(QDII)", "fund", "R4", 3),
    ("OF000171", "易方达裕丰回报债券", "fund", "R2", 3),
    ("SH019547", "24国债05", "bond", "R1", 2), ("SH204001", "GC001 国债逆回购", "bond", "R1", 5),
    ("SZ127045", "牧原转债", "bond", "R3", 3), ("SH185888", "22招商债01", "bond", "R2", 2),
    ("SY0091", "收益凭证·稳盈91天", "wealth", "R2", 3), ("ZG0001", "集合资管·稳健增利1号", "wealth", "R2", 2),
    ("ZG0017", "私募精选·量化多策略", "wealth", "R4", 2),
    ("MARGIN01", "融资融券·融资买入", "margin", "R4", 5),
    ("OP510050", "50ETF期权", "option", "R5", 3), ("OP510300", "300ETF期权", "option", "R5", 2),
]

SURNAMES = ("王", 7.2), ("李", 7.1), ("张", 6.8), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("黄", 2.2), ("赵", 2.0), \
    ("吴", 1.9), ("周", 1.9), ("徐", 1.5), ("孙", 1.4), ("马", 1.3), ("朱", 1.2), ("胡", 1.2), ("郭", 1.1), \
    ("何", 1.0), ("高", 1.0), ("林", 1.0), ("罗", 0.9), ("郑", 0.9), ("梁", 0.8), ("谢", 0.7), ("宋", 0.6), \
    ("唐", 0.6), ("许", 0.6), ("韩", 0.6), ("冯", 0.6), ("邓", 0.6), ("曹", 0.5), ("彭", 0.5), ("曾", 0.5), \
    ("肖", 0.5), ("田", 0.5), ("董", 0.5), ("袁", 0.4), ("潘", 0.4), ("于", 0.4), ("蒋", 0.4), ("蔡", 0.4), \
    ("余", 0.4), ("杜", 0.4), ("叶", 0.4), ("程", 0.4), ("苏", 0.3), ("魏", 0.3), ("吕", 0.3), ("丁", 0.3), \
    ("任", 0.3), ("沈", 0.3), ("姚", 0.3), ("卢", 0.3), ("姜", 0.3), ("崔", 0.3), ("钟", 0.3), ("谭", 0.3), \
    ("陆", 0.3), ("汪", 0.3), ("范", 0.3), ("金", 0.3), ("石", 0.2), ("廖", 0.2), ("贾", 0.2), ("夏", 0.2), \
    ("欧阳", 0.05), ("司马", 0.02), ("上官", 0.02)
MALE_CHARS = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳晨峰建国文志海东亮成博睿轩然泽一航杨毅彬振"
FEMALE_CHARS = "芳娜敏静丽艳娟霞燕玲婷雪慧莹倩琳晶颖洁欣悦怡梦佳雨涵诗琪萱月兰秀英红梅琴璐瑶薇蕾楠思"
OCCUPATIONS = (("企业职员", 20), ("工程师", 9), ("IT从业者", 9), ("私营业主", 8), ("公务员", 5), ("事业单位", 4),
               ("自由职业", 8), ("个体工商户", 7), ("教师", 6), ("销售", 6), ("金融从业者", 5), ("医生", 4),
               ("会计", 3), ("律师", 1), ("设计师", 2))
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153", "155",
                   "156", "157", "158", "159", "166", "176", "177", "180", "181", "182", "183", "185", "186", "187",
                   "188", "189", "191", "195", "198", "199")
MOBILE_STRIDE = 73_939_133  # coprime to 10**8, so ordinal → 8 digits is a bijection: no duplicate mobiles

EVENT_TYPES = ("app_login", "news_read", "product_view", "fund_page_view")
NEWS_CATEGORIES = ("宏观", "行业", "个股", "基金", "两融", "科创板", "港股", "债市")
PAGE_SOURCES = ("首页推荐", "搜索", "资讯详情页", "自选股", "投顾消息")
FUND_SECTIONS = ("净值走势", "持仓明细", "基金经理", "费率", "定投")


# --- small helpers -------------------------------------------------------------------------

def _cum(weights) -> list[float]:
    return list(accumulate(weights))


def _pick(rng: random.Random, items, cum: list[float]):
    return items[bisect(cum, rng.random() * cum[-1])]


def _day(d: date) -> int:
    """Days since 1970-01-01 (the unit the SQL below works in)."""
    return d.toordinal() - EPOCH_ORDINAL


def _weekday_index(day: int) -> int:
    """Mondays-to-Fridays strictly before ``day`` counted from Monday 1970-01-05 (day 4)."""
    weeks, dow = divmod(day - 4, 7)
    return weeks * 5 + min(dow, 5)


def _iso(day: int) -> str:
    return date.fromordinal(day + EPOCH_ORDINAL).isoformat()


def _timestamp(day: int, seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    return f"{_iso(day)} {h:02d}:{rest // 60:02d}:{rest % 60:02d}+08"


class _Progress:
    def __init__(self, stdout: TextIO | None):
        self.stdout = stdout
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        if self.stdout is not None:
            self.stdout.write(f"[{self.elapsed():7.1f}s] {message}\n")
            if hasattr(self.stdout, "flush"):
                self.stdout.flush()


# --- staff, branches, products ---------------------------------------------------------------

def _branch_count(customers: int) -> int:
    return max(4, min(len(BRANCHES), math.ceil(customers / CUSTOMERS_PER_BRANCH)))


@dataclass
class _Book:
    """Who serves whom: per branch, its advisors and their relative book sizes."""

    branches: list[tuple[BranchSpec, int]]  # (spec, branch id)
    branch_cum: list[float]
    advisors: list[list[int]]  # per branch
    advisor_cum: list[list[float]]


def staff_seed(*, customers: int) -> _Book:
    """Demo staff plus enough generated branches, managers and advisors for ``customers`` clients
    (about one advisor per 500). Idempotent: generated staff are keyed by username."""
    demo_staff_load()
    specs = BRANCHES[: _branch_count(customers)]
    branch_ids = {s.code: branch_upsert(code=s.code, name=s.name, region=s.region).pk for s in specs}
    total_weight = sum(s.weight for s in specs)
    wanted_advisors = max(len(DEMO_ADVISORS), round(customers / CUSTOMERS_PER_ADVISOR))
    demo = {u.username: u for u in User.objects.filter(username__in=DEMO_ADVISORS).select_related("branch")}
    generated: list[User] = []
    serial = 0
    for spec in specs:
        demo_here = [demo[name] for name in DEMO_ADVISORS if demo[name].branch.code == spec.code]
        target = max(1, round(wanted_advisors * spec.weight / total_weight))
        for _ in range(max(0, target - len(demo_here))):
            serial += 1
            generated.append(User(
                username=f"gen_adv_{serial:05d}", password=make_password(None), role=Role.ADVISOR,
                branch_id=branch_ids[spec.code], employee_code=f"G{serial:05d}",
                display_name=f"投顾{serial:05d}", wecom_userid=f"wx_gen_adv_{serial:05d}",
            ))
        if spec.code not in {"BJ01", "SH01"}:  # the demo already has managers there
            generated.append(User(
                username=f"gen_mgr_{spec.code.lower()}", password=make_password(None), role=Role.BRANCH_MANAGER,
                branch_id=branch_ids[spec.code], employee_code=f"GM{spec.code}",
                display_name=f"{spec.name[:-3]}经理", wecom_userid=f"wx_gen_mgr_{spec.code.lower()}",
            ))
    User.objects.bulk_create(
        generated, batch_size=1000, update_conflicts=True, unique_fields=["username"],
        update_fields=["role", "branch", "employee_code", "display_name", "wecom_userid"],
    )
    by_branch: dict[int, list[tuple[int, float]]] = {bid: [] for bid in branch_ids.values()}
    # demo advisors carry a senior's book (twice the average) so a demo login shows a full list
    senior = 2.0 if wanted_advisors > len(DEMO_ADVISORS) else 1.0
    for name in DEMO_ADVISORS:
        by_branch[demo[name].branch_id].append((demo[name].pk, senior))
    gen_rows = User.objects.filter(username__startswith="gen_adv_", branch_id__in=branch_ids.values(),
                                   username__lte=f"gen_adv_{serial:05d}").order_by("username")
    for pk, branch_id in gen_rows.values_list("pk", "branch_id"):
        by_branch[branch_id].append((pk, 1.0))
    branches = [(s, branch_ids[s.code]) for s in specs]
    if wanted_advisors == len(DEMO_ADVISORS):
        # small seeds: size each branch by its advisors so every demo advisor gets a few hundred clients
        branch_weights = [sum(w for _, w in by_branch[bid]) for _, bid in branches]
    else:
        branch_weights = [s.weight for s in specs]
    return _Book(
        branches=branches,
        branch_cum=_cum(branch_weights),
        advisors=[[pk for pk, _ in by_branch[bid]] for _, bid in branches],
        advisor_cum=[_cum([w for _, w in by_branch[bid]]) for _, bid in branches],
    )


def products_seed() -> dict[str, int]:
    """~30 products of the types the brief names, upserted by code; returns code → id."""
    Product.objects.bulk_create(
        [Product(code=code, name=name, type=kind, risk_level=risk) for code, name, kind, risk, _ in PRODUCTS],
        update_conflicts=True, unique_fields=["code"], update_fields=["name", "type", "risk_level"],
    )
    return dict(Product.objects.filter(code__in=[p[0] for p in PRODUCTS]).values_list("code", "id"))


# --- customers --------------------------------------------------------------------------------

CUSTOMER_COLUMNS = (
    "id", "external_id", "name", "gender", "birth_date", "region", "occupation", "branch_id", "advisor_id",
    "opened_at", "channel", "utm_source", "utm_medium", "utm_campaign", "funnel_stage", "risk_level",
    "risk_assessed_at", "total_assets", "lifecycle_stage", "wecom_external_userid", "mobile_encrypted",
    "mobile_hash", "mobile_masked", "id_number_encrypted", "id_number_hash", "id_number_masked",
    "last_contact_at", "created_at", "updated_at",
)
PROFILE_COLUMNS = (
    "cid", "ord", "risk", "assets", "n_trades", "t_first", "t_w0", "t_wn", "n_news", "n_early",
    "e_d0", "e_dn", "e_w0", "e_wn", "n_late", "l_d0", "l_dn", "l_w0", "l_wn", "pref", "pcnt", "t_id0", "e_id0",
)
FUNNEL = ("id_uploaded", "password_set", "video_verified", "opened", "funded")
NULL = "\\N"


class _CustomerFactory:
    """Draws one customer at a time from a single ``random.Random(seed)`` stream, so customer
    ``k`` depends only on (seed, k, the branch layout)."""

    def __init__(self, *, seed: int, today: date, book: _Book, id_bases: dict[str, int]):
        self.rng = random.Random(seed)
        self.today = _day(today)
        self.last_day = self.today - 1  # nothing is generated for today, so nothing lies in the future
        self.book = book
        # ids are handed out here rather than by the sequences: dense, in customer order, and no nextval() per row
        self.next_id = dict(id_bases)
        self.mobile_offset = random.Random(f"mobile:{seed}").randrange(10**8)
        self.id_numbers: set[str] = set()
        self.channel_cum = _cum(c.share for c in CHANNELS)
        self.surnames = [s for s, _ in SURNAMES]
        self.surname_cum = _cum(w for _, w in SURNAMES)
        self.occupations = [o for o, _ in OCCUPATIONS]
        self.occupation_cum = _cum(w for _, w in OCCUPATIONS)
        self.product_counts = [0] + [len(_trade_products_for(level)) for level in range(1, 6)]

    def _name(self, male: bool) -> str:
        rng = self.rng
        chars = MALE_CHARS if male else FEMALE_CHARS
        given = rng.choice(chars) if rng.random() < 0.3 else rng.choice(chars) + rng.choice(chars)
        return _pick(rng, self.surnames, self.surname_cum) + given

    def _id_number(self, area: str, birth: date, male: bool) -> str:
        rng = self.rng
        while True:
            first17 = f"{area}{birth:%Y%m%d}{rng.randrange(500) * 2 + (1 if male else 0):03d}"
            number = first17 + id_number_check_digit(first17)
            if number not in self.id_numbers:
                self.id_numbers.add(number)
                return number

    def make(self, ordinal: int) -> tuple[str, str]:
        """One customer as a COPY line, and its profile line (what the SQL expands into trades/events)."""
        rng = self.rng
        rand = rng.random
        book = self.book
        today, last_day = self.today, self.last_day
        ch = _pick(rng, CHANNELS, self.channel_cum)
        b = bisect(book.branch_cum, rand() * book.branch_cum[-1])
        spec, branch_id = book.branches[b]

        # sign-up date: growth over three years, so recent months hold more sign-ups
        x = (-1 + math.sqrt(1 + 8 * rand())) / 2
        signup = min(last_day, today - HISTORY_DAYS + int(x * HISTORY_DAYS))
        stage = 0
        for pass_rate in ch.steps:
            if rand() >= pass_rate:
                break
            stage += 1
        opened = stage >= 3
        funded = stage == 4

        male = rand() < 0.57
        age = min(78.0, max(18.5, rng.gauss(ch.age_mean, 10)))
        birth = date.fromordinal(signup + EPOCH_ORDINAL - int(age * 365.25))
        area = rng.choice(spec.area_codes) if rand() < 0.8 else rng.choice(MIGRANT_AREA_CODES)
        region = spec.region if rand() < 0.9 else rng.choice(BRANCHES).region
        if age < 23 and rand() < 0.6:
            occupation = "学生"
        elif age >= 58 and rand() < 0.7:
            occupation = "退休"
        else:
            occupation = _pick(rng, self.occupations, self.occupation_cum)
        assigned = rand() < (0.97 if opened else 0.85)
        advisor_id = _pick(rng, book.advisors[b], book.advisor_cum[b]) if assigned else None

        opened_day = min(last_day, signup + (0 if rand() < 0.7 else 1 if rand() < 0.67 else rng.randint(2, 6)))
        risk = 0
        assessed = None
        if stage >= 2:
            risk = _pick(rng, (1, 2, 3, 4, 5), (0.06, 0.26, 0.64, 0.90, 1.0))
            if age < 30 and rand() < 0.3:
                risk = min(5, risk + 1)
            elif age > 60 and rand() < 0.4:
                risk = max(1, risk - 1)
            assessed = opened_day
            if rand() < 0.45:  # re-assessed since; the others expire 24 months after opening
                assessed = rng.randint(assessed, last_day)

        assets = 0.0
        engaged = opened and rand() < ch.news_engaged
        n_trades = t_first = t_w0 = t_wn = 0
        active_until = last_day
        dormant = False
        if funded:
            assets = min(8e7, max(2000.0, rng.lognormvariate(math.log(ch.assets_median), 1.3)))
            funded_day = min(last_day, opened_day + (0 if rand() < 0.6 else rng.randint(1, 15)))
            if assets >= 500_000 and opened_day <= today - 240 and rand() < 0.2:
                dormant = True  # a high-value client who stopped trading 6–18 months ago
                active_until = today - rng.randint(190, max(190, min(540, today - opened_day - 45)))
                active_until = max(active_until, funded_day + 20)
            elif rand() < ch.churn * (0.4 if assets >= 300_000 else 1.0):
                active_until = min(last_day, funded_day + 7 + int(rng.expovariate(1 / 90)))
            end_weekday = _weekday_index(active_until + 1)  # exclusive
            t_first = min(_weekday_index(funded_day) + rng.randint(0, 5), end_weekday - 1)
            if t_first >= _weekday_index(funded_day):
                second_trade = 0.85 if engaged else 0.24
                if assets >= 300_000:  # wealthy clients trade on regardless of what they read
                    second_trade += 0.25
                if rand() < second_trade:
                    active_years = min(1.0, (active_until - funded_day + 1) / 365)
                    size = min(1.6, max(0.6, (assets / 100_000) ** 0.15))
                    n_trades = 2 + int(rng.lognormvariate(4.65, 1.0) * ch.activity * size * active_years ** 0.6)
                    n_trades = min(n_trades, 4000)
                else:
                    n_trades = 1 if rand() < 0.85 else 0
                t_w0, t_wn = t_first + 1, end_weekday - t_first - 1
                if t_wn <= 0:
                    n_trades = min(n_trades, 1)

        # behaviour events: an "early" window (first 30 days after opening, or the sign-up weeks of
        # a prospect) and a "late" one; news reads of opened clients in the early window are exactly n_news
        if opened:
            e_d0 = opened_day
            e_dn = min(30, last_day - opened_day + 1)
            n_news = 6 + min(30, int(rng.expovariate(1 / 5))) if engaged else rng.choice((0, 0, 0, 1, 1, 2, 2, 3, 4, 5))
            n_early = 2 + int(rng.expovariate(1 / (6 if engaged else 3)))
            if not funded:
                active_until = min(last_day, opened_day + 30 + int(rng.expovariate(1 / 60)))
            l_d0 = opened_day + 31
            l_end = min(last_day, active_until + 45)
            l_dn = max(0, l_end - l_d0 + 1)
            n_late = 0
            if l_dn:
                scale = (1.6 if engaged else 1.0) * (1.0 if funded else 0.35)
                n_late = int(rng.lognormvariate(4.57, 0.9) * scale * min(1.0, l_dn / 365) ** 0.7)
        else:
            e_d0 = e_dn = n_news = n_early = 0
            l_d0 = signup
            l_dn = min(21, last_day - signup + 1)
            n_late = 2 + int(rng.expovariate(1 / 5))
        n_late = min(n_late, MAX_EVENTS_PER_CUSTOMER - n_news - n_early)
        e_w0 = _weekday_index(e_d0)
        e_wn = _weekday_index(e_d0 + e_dn) - e_w0
        l_w0 = _weekday_index(l_d0)
        l_wn = _weekday_index(l_d0 + l_dn) - l_w0
        # preferred product for product views: bolder clients look at margin, STAR and options
        pref = rng.choice((8, 9, 10, 27, 28, 29)) if risk >= 4 and rand() < 0.4 else rng.randrange(len(PRODUCTS))

        if not opened:
            lifecycle = "acquire"
        elif not funded or n_trades <= 1:
            lifecycle = "activate"
        elif dormant or active_until < last_day - 90:
            lifecycle = "retain"
        elif assets >= 100_000 or n_trades >= 30:
            lifecycle = "refer" if assets >= 200_000 and rand() < 0.08 else "revenue"
        else:
            lifecycle = "retain"

        last_contact = NULL
        if advisor_id is not None:
            if dormant:
                days_ago = rng.randint(120, 400) if rand() < 0.4 else None
            elif rand() < (0.8 if funded else 0.55 if opened else 0.3):
                days_ago = 1 + int(rng.expovariate(1 / (25 if funded else 40)))
            else:
                days_ago = None
            if days_ago is not None:
                contact_day = max(signup + 1, today - days_ago)
                if contact_day < today:
                    last_contact = _timestamp(contact_day, rng.randint(9 * 3600, 18 * 3600))
        wecom = NULL
        if advisor_id is not None and rand() < (0.72 if opened else 0.3):
            wecom = f"wm{rng.getrandbits(64):016x}{ordinal:x}"

        mobile = f"{rng.choice(MOBILE_PREFIXES)}{(ordinal * MOBILE_STRIDE + self.mobile_offset) % 10**8:08d}"
        id_number = self._id_number(area, birth, male)
        created = _timestamp(signup, rng.randint(8 * 3600, 23 * 3600))
        self.next_id["customers_customer"] += 1
        cid = self.next_id["customers_customer"]
        trade_id0, event_id0 = self.next_id["customers_trade"], self.next_id["customers_behaviourevent"]
        self.next_id["customers_trade"] += n_trades
        self.next_id["customers_behaviourevent"] += n_news + n_early + n_late
        campaign = rng.choice(ch.campaigns)
        customer = "\t".join((
            str(cid), f"88{ordinal:010d}", self._name(male), "M" if male else "F", birth.isoformat(), region,
            occupation, str(branch_id), str(advisor_id) if advisor_id else NULL,
            _iso(opened_day) if opened else NULL, ch.name, ch.utm_source, ch.utm_medium, campaign,
            FUNNEL[stage], f"C{risk}" if risk else "", _iso(assessed) if assessed is not None else NULL,
            f"{assets:.2f}", lifecycle, wecom, encrypt(mobile), blind_index(mobile), mask_mobile(mobile),
            encrypt(id_number), blind_index(id_number), mask_id_number(id_number), last_contact, created,
            last_contact if last_contact != NULL else created,
        ))
        profile = "\t".join(map(str, (
            cid, ordinal, risk, round(assets, 2), n_trades, t_first, t_w0, t_wn, n_news, n_early,
            e_d0, e_dn, e_w0, e_wn, n_late, l_d0, l_dn, l_w0, l_wn, pref, self.product_counts[risk], trade_id0, event_id0,
        )))
        return customer, profile

    def chunk(self, first: int, last: int) -> tuple[str, str]:
        """Customers ``first``..``last`` as two COPY texts: customers and their profiles."""
        rows = [self.make(ordinal) for ordinal in range(first, last + 1)]
        return "\n".join(c for c, _ in rows) + "\n", "\n".join(p for _, p in rows) + "\n"


def _chunks_produce(*, factory: _CustomerFactory, ranges: list[tuple[int, int]], queue) -> None:
    """Body of the generator process: chunks in order, then None; an error is sent as text."""
    try:
        for first, last in ranges:
            queue.put((first, last, *factory.chunk(first, last)))
        queue.put(None)
    except Exception:  # noqa: BLE001 - the parent re-raises it with the traceback
        queue.put(traceback.format_exc())


def _chunks(*, factory: _CustomerFactory, customers: int, in_background: bool) -> Iterator[tuple[int, int, str, str]]:
    """(first, last ordinal, customers COPY text, profiles COPY text) per chunk, in order.

    In the background, a forked process draws the customers (Python and Fernet bound, one core)
    while this process has PostgreSQL expand the previous chunk (the other core). The factory
    is one sequential stream either way, so both give identical rows."""
    ranges = [(first, min(customers, first + COPY_CHUNK - 1)) for first in range(1, customers + 1, COPY_CHUNK)]
    if not in_background:
        for first, last in ranges:
            yield (first, last, *factory.chunk(first, last))
        return
    context = multiprocessing.get_context("fork")
    queue = context.Queue(maxsize=3)
    child = context.Process(target=_chunks_produce, kwargs={"factory": factory, "ranges": ranges, "queue": queue},
                            daemon=True)
    child.start()
    try:
        while True:
            try:
                item = queue.get(timeout=5)
            except Empty:
                if not child.is_alive():
                    raise RuntimeError("the customer generator process died") from None
                continue
            if item is None:
                break
            if isinstance(item, str):
                raise RuntimeError(f"the customer generator failed:\n{item}")
            yield item
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        queue.close()


def _trade_products_for(level: int) -> list[int]:
    """Indexes into PRODUCTS, repeated by trade weight, of what a C``level`` client may hold."""
    return [i for i, p in enumerate(PRODUCTS) if int(p[3][1]) <= level for _ in range(p[4])]


def _event_properties(seed: int) -> list[tuple[int, int, str, str]]:
    """256 property variants per event type (type index, variant, type, JSON); events pick one by hash,
    which costs a join instead of building JSON for each of 50 million rows."""
    rng = random.Random(f"events:{seed}")
    rows = []
    funds = [p for p in PRODUCTS if p[2] == "fund"]
    for variant in range(256):
        platform = rng.choice(("android", "android", "ios", "ios", "harmony"))
        # kept to a few keys: at 50 million rows every byte is ~50 MB of table and as much WAL
        login = {"platform": platform, "app_version": f"9.{rng.randint(2, 6)}.{rng.randint(0, 9)}"}
        news = {"article_id": 300_000 + rng.randrange(200_000), "category": rng.choice(NEWS_CATEGORIES),
                "dwell_seconds": int(rng.lognormvariate(4, 0.8))}
        code, _, kind, _, _ = PRODUCTS[variant % len(PRODUCTS)]
        view = {"product_code": code, "product_type": kind, "source": rng.choice(PAGE_SOURCES)}
        fund_page = {"fund_code": funds[variant % len(funds)][0], "section": rng.choice(FUND_SECTIONS)}
        for type_index, props in enumerate((login, news, view, fund_page)):
            rows.append((type_index, variant, EVENT_TYPES[type_index], json.dumps(props, ensure_ascii=False)))
    return rows


# --- bulk loading -----------------------------------------------------------------------------

BULK_TABLES = ("customers_customer", "customers_trade", "customers_behaviourevent")


def _secondary_schema_drop(cursor, *, table: str) -> list[str]:
    """Drop the indexes and the unique, foreign-key and (when nothing references the table)
    primary-key constraints of ``table``, returning the DDL that recreates them in a good order.
    Objects another table depends on, and CHECK constraints, stay."""
    cursor.execute(
        """
        SELECT c.conname, format('ALTER TABLE %%I ADD CONSTRAINT %%I %%s', %s, c.conname, pg_get_constraintdef(c.oid)),
               c.contype
        FROM pg_constraint c
        WHERE c.conrelid = %s::regclass AND c.contype IN ('p', 'u', 'f')
          AND NOT (c.contype IN ('p', 'u') AND EXISTS (
              SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid))
        ORDER BY c.conname
        """,
        [table, table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = %s::regclass AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY 1
        """,
        [table],
    )
    indexes = cursor.fetchall()
    for name, _, _ in constraints:
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f"DROP INDEX {name}")
    # foreign keys last: validating them reads the other tables' keys
    return ([ddl for _, ddl, kind in constraints if kind == "p"] + [ddl for _, ddl in indexes]
            + [ddl for _, ddl, kind in constraints if kind == "u"] + [ddl for _, ddl, kind in constraints if kind == "f"])


def _copy(cursor, *, table: str, columns: tuple[str, ...], text: str) -> None:
    copy_in(cursor, table=table, columns=columns, text=text)


def _event_type_sql() -> str:
    """Event type index for row k: the first n_news are news reads; the rest of the early window
    never are (so "news items in the first 30 days" is exactly n_news); the late window mixes all four."""
    return """
        CASE WHEN g.k <= p.n_news THEN 1
             WHEN g.k <= p.n_news + p.n_early THEN
                  CASE WHEN (r.h & 255) < 150 THEN 0 WHEN (r.h & 255) < 210 THEN 2 ELSE 3 END
             ELSE CASE WHEN (r.h & 255) < 102 THEN 0 WHEN (r.h & 255) < 166 THEN 1
                       WHEN (r.h & 255) < 217 THEN 2 ELSE 3 END
        END"""


# seconds after midnight, Beijing time: s in [0, 14400) → the 9:30–11:30 and 13:00–15:00 sessions
SESSION_SECOND = "CASE WHEN {s} < 7200 THEN 34200 + {s} ELSE 46800 + {s} - 7200 END"
# o in [0, 28800) → 7:00–9:30, 12:00–13:00, 19:00–23:30 (before the open, lunch, evening)
OFF_HOURS_SECOND = ("CASE WHEN {o} < 9000 THEN 25200 + {o} WHEN {o} < 12600 THEN 43200 + {o} - 9000 "
                    "ELSE 68400 + {o} - 12600 END")
WEEKDAY_TO_DAY = "(4 + ({w}) / 5 * 7 + ({w}) %% 5)"  # %% : the SQL runs with parameters

EVENTS_SQL = f"""
INSERT INTO customers_behaviourevent (id, event_id, customer_id, type, occurred_at, properties)
SELECT p.e_id0 + g.k, 'EV' || (1000000000000000 + p.ord * 100000 + g.k)::text, p.cid, pr.type_name,
       to_timestamp((CASE WHEN c.session AND w.wn > 0
                          THEN {WEEKDAY_TO_DAY.format(w="w.w0 + c.x %% w.wn")}::bigint * 86400
                               + {SESSION_SECOND.format(s="c.s")}
                          ELSE (w.d0 + c.x %% w.dn)::bigint * 86400 + {OFF_HOURS_SECOND.format(o="c.o")}
                     END - {SECONDS_EAST})::float8),
       pr.props
FROM seed_profile p
CROSS JOIN LATERAL generate_series(1, p.n_news + p.n_early + p.n_late) AS g(k)
CROSS JOIN LATERAL (SELECT hashint8extended(p.ord * 100000 + g.k, %(salt)s) AS h) AS r
CROSS JOIN LATERAL (
    SELECT {_event_type_sql()} AS ty,
           g.k <= p.n_news + p.n_early AS early,
           ((r.h >> 8) & 255) < 166 AS session,
           ((r.h >> 16) & 1048575)::int AS x,
           (((r.h >> 36) & 16383)::int %% 14400) AS s,
           (((r.h >> 36) & 32767)::int %% 28800) AS o,
           ((r.h >> 52) & 255)::int AS v,
           ((r.h >> 60) & 1) = 1 AS preferred
) AS c
CROSS JOIN LATERAL (
    SELECT CASE WHEN c.early THEN p.e_d0 ELSE p.l_d0 END AS d0, CASE WHEN c.early THEN p.e_dn ELSE p.l_dn END AS dn,
           CASE WHEN c.early THEN p.e_w0 ELSE p.l_w0 END AS w0, CASE WHEN c.early THEN p.e_wn ELSE p.l_wn END AS wn
) AS w
JOIN seed_event_props pr
  ON pr.type_index = c.ty
 AND pr.variant = CASE WHEN c.ty = 2 AND c.preferred THEN p.pref + {len(PRODUCTS)} * (c.v & 7) ELSE c.v END
WHERE p.cid BETWEEN %(low)s AND %(high)s
"""

TRADES_SQL = f"""
INSERT INTO customers_trade (id, external_id, customer_id, product_id, traded_at, side, amount)
SELECT p.t_id0 + g.k, 'TR' || (1000000000000000 + p.ord * 100000 + g.k)::text, p.cid, tp.product_id,
       to_timestamp(({WEEKDAY_TO_DAY.format(w="t.w")}::bigint * 86400 + {SESSION_SECOND.format(s="t.s")}
                     - {SECONDS_EAST})::float8),
       CASE WHEN g.k = 1 OR ((r.h >> 12) & 255) < 140 THEN 'buy' ELSE 'sell' END,
       round(greatest(100, p.assets * (0.004 + 0.3 * power(((r.h & 4095)::float8 / 4096), 3)))::numeric, 2)
FROM seed_profile p
CROSS JOIN LATERAL generate_series(1, p.n_trades) AS g(k)
CROSS JOIN LATERAL (SELECT hashint8extended(p.ord * 100000 + g.k, %(salt)s) AS h) AS r
CROSS JOIN LATERAL (
    SELECT CASE WHEN g.k = 1 THEN p.t_first ELSE p.t_w0 + ((r.h >> 20) & 1048575)::int %% p.t_wn END AS w,
           (((r.h >> 40) & 16383)::int %% 14400) AS s
) AS t
JOIN seed_trade_products tp ON tp.level = p.risk AND tp.idx = ((r.h >> 54) & 511)::int %% p.pcnt
WHERE p.n_trades > 0 AND p.cid BETWEEN %(low)s AND %(high)s
"""


def _sequence(cursor, *, table: str) -> str:
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    return cursor.fetchone()[0]


def _profile_tables_create(cursor, *, seed: int, product_ids: dict[str, int]) -> None:
    cursor.execute("DROP TABLE IF EXISTS seed_profile, seed_event_props, seed_trade_products")
    cursor.execute(
        "CREATE TEMP TABLE seed_profile (cid bigint PRIMARY KEY, ord bigint, risk int, assets float8, "
        "n_trades int, t_first int, t_w0 int, t_wn int, n_news int, n_early int, e_d0 int, e_dn int, "
        "e_w0 int, e_wn int, n_late int, l_d0 int, l_dn int, l_w0 int, l_wn int, pref int, pcnt int, t_id0 bigint, "
        "e_id0 bigint) "
        "ON COMMIT DROP"
    )
    cursor.execute("CREATE TEMP TABLE seed_event_props (type_index int, variant int, type_name text, props jsonb, "
                   "PRIMARY KEY (type_index, variant)) ON COMMIT DROP")
    cursor.executemany("INSERT INTO seed_event_props VALUES (%s, %s, %s, %s::jsonb)", _event_properties(seed))
    cursor.execute("CREATE TEMP TABLE seed_trade_products (level int, idx int, product_id bigint, "
                   "PRIMARY KEY (level, idx)) ON COMMIT DROP")
    rows = [(level, idx, product_ids[PRODUCTS[p][0]])
            for level in range(1, 6) for idx, p in enumerate(_trade_products_for(level))]
    cursor.executemany("INSERT INTO seed_trade_products VALUES (%s, %s, %s)", rows)


# --- the seed ---------------------------------------------------------------------------------

def _rows_load(cursor, *, factory: _CustomerFactory, customers: int, in_background: bool, seed: int, id_base: int,
               progress: _Progress) -> dict[str, int]:
    """COPY the customers chunk by chunk and expand each chunk's trades and events; returns row counts."""
    counts = {"trades": 0, "events": 0}
    waited = time.monotonic()
    with closing(_chunks(factory=factory, customers=customers, in_background=in_background)) as chunks:
        for first, last, customer_text, profile_text in chunks:
            waited, sql_started = time.monotonic() - waited, time.monotonic()
            _copy(cursor, table="customers_customer", columns=CUSTOMER_COLUMNS, text=customer_text)
            _copy(cursor, table="seed_profile", columns=PROFILE_COLUMNS, text=profile_text)
            cursor.execute(TRADES_SQL, {"salt": seed * 2 + 1, "low": id_base + first, "high": id_base + last})
            counts["trades"] += cursor.rowcount
            cursor.execute(EVENTS_SQL, {"salt": seed * 2, "low": id_base + first, "high": id_base + last})
            counts["events"] += cursor.rowcount
            progress.say(f"customers {last:,}/{customers:,}, trades {counts['trades']:,}, events {counts['events']:,} "
                         f"(waited {waited:.1f}s for the generator, SQL {time.monotonic() - sql_started:.1f}s)")
            waited = time.monotonic()
    return counts


def seed_demo(*, customers: int, seed: int = 42, stdout: TextIO | None = None, today: date | None = None) -> dict:
    """Fill an empty database with ``customers`` realistic clients and their trades and events.

    Deterministic for (customers, seed, today); ``today`` defaults to the current date in
    Asia/Shanghai. Runs in one transaction, so a failure leaves nothing behind. Refuses
    (DemoDataError) when customers already exist. Returns the row counts and elapsed seconds.
    """
    if customers < 1:
        raise DemoDataError("customers must be at least 1")
    today = today or timezone.localdate()
    progress = _Progress(stdout)
    bulk = customers >= REBUILD_INDEXES_FROM
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE customers_customer IN SHARE ROW EXCLUSIVE MODE")
        if Customer.objects.exists():
            raise DemoDataError(
                "The database already holds customers; seed_demo only fills an empty customers table. "
                "Use a fresh database (e.g. another SCRM_DATA_DIR) or delete the customers first."
            )
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cursor.execute("SET LOCAL work_mem = '64MB'")
        book = staff_seed(customers=customers)
        product_ids = products_seed()
        # check the staff rows' deferred foreign keys now: ALTER TABLE below refuses tables with pending checks
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        advisors = sum(len(a) for a in book.advisors)
        progress.say(f"staff: {len(book.branches)} branches, {advisors} advisors; {len(product_ids)} products")

        _profile_tables_create(cursor, seed=seed, product_ids=product_ids)
        rebuild: list[str] = []
        if bulk:
            for table in BULK_TABLES:
                rebuild += _secondary_schema_drop(cursor, table=table)
            progress.say(f"dropped {len(rebuild)} secondary indexes/constraints for the bulk load")

        id_bases = {}
        for table in BULK_TABLES:
            cursor.execute(f"SELECT last_value, is_called FROM {_sequence(cursor, table=table)}")
            last_value, is_called = cursor.fetchone()
            id_bases[table] = last_value if is_called else last_value - 1
        factory = _CustomerFactory(seed=seed, today=today, book=book, id_bases=id_bases)
        counts = _rows_load(cursor, factory=factory, customers=customers, in_background=bulk, seed=seed,
                            id_base=id_bases["customers_customer"], progress=progress)
        for table, rows in (("customers_customer", customers), ("customers_trade", counts["trades"]),
                            ("customers_behaviourevent", counts["events"])):
            if rows:
                cursor.execute("SELECT setval(%s, %s)", [_sequence(cursor, table=table), id_bases[table] + rows])

        if rebuild:
            cursor.execute("SET LOCAL max_parallel_maintenance_workers = 2")
            for ddl in rebuild:
                cursor.execute(ddl)
                progress.say(f"rebuilt: {ddl[:110]}")
        cursor.execute("DROP TABLE seed_profile, seed_event_props, seed_trade_products")
        for table in (*BULK_TABLES, "customers_product", "core_user", "core_branch"):
            cursor.execute(f"ANALYZE {table}")
        progress.say("analyzed")
    if customers >= REBUILD_INDEXES_FROM and not connection.in_atomic_block:
        # set the visibility map so counts over the list's indexes are index-only from the first query
        with connection.cursor() as cursor:
            cursor.execute("VACUUM customers_customer")
        progress.say("vacuumed customers")
    result = {
        "branches": len(book.branches),
        "advisors": advisors,
        "products": Product.objects.count(),
        "customers": customers,
        **counts,
        "seconds": round(progress.elapsed(), 1),
    }
    progress.say(f"done: {result}")
    return result
