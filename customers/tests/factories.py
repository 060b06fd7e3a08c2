import itertools
from datetime import date
from decimal import Decimal

import factory

from core.crypto import blind_index, encrypt, mask_id_number, mask_mobile
from core.models import Branch
from core.validators import id_number_check_digit
from customers.models import Customer, Product, Task, Trade

_seq = itertools.count(1)


def id_number_for(birth: date, serial: int = 123) -> str:
    first17 = f"110101{birth:%Y%m%d}{serial % 1000:03d}"
    return first17 + id_number_check_digit(first17)


def personal_fields(*, mobile: str = "", id_number: str = "") -> dict:
    return {
        "mobile_encrypted": encrypt(mobile), "mobile_hash": blind_index(mobile),
        "mobile_masked": mask_mobile(mobile) if mobile else "",
        "id_number_encrypted": encrypt(id_number), "id_number_hash": blind_index(id_number),
        "id_number_masked": mask_id_number(id_number) if id_number else "",
    }


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    external_id = factory.Sequence(lambda n: f"C{n:08d}")
    name = factory.Sequence(lambda n: f"客户{n}")
    branch = factory.LazyAttribute(lambda o: o.advisor.branch if o.advisor else Branch.objects.get_or_create(
        code="BJ01", defaults={"name": "BJ01 营业部"})[0])
    advisor = None
    risk_level = "C3"
    risk_assessed_at = factory.LazyFunction(date.today)
    total_assets = Decimal("100000.00")
    funnel_stage = "funded"
    opened_at = date(2025, 3, 1)

    @classmethod
    def _create(cls, model_class, *args, mobile="", id_number="", **kwargs):
        kwargs.update(personal_fields(mobile=mobile, id_number=id_number))
        return super()._create(model_class, *args, **kwargs)


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"P{n:04d}")
    name = factory.Sequence(lambda n: f"产品{n}")
    type = "fund"
    risk_level = "R3"


class TradeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trade

    external_id = factory.Sequence(lambda n: f"T{n:09d}")
    product = factory.SubFactory(ProductFactory)
    side = "buy"
    amount = Decimal("10000.00")


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    title = "电话回访"
    source = "manual"
